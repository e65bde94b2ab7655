"""The virtual cluster's wiring: network namespaces and links, made through netlink (pyroute2).

One cluster, tag ``T``, is::

    root namespace ── veth ``tsh-T`` (the only thing made there) ─┐
    tashi-T-cm  (cluster manager, scheduler, dnsmasq) ── eth0 ──┤
    tashi-T-h1  (node manager 1 and its VMs)          ── eth0 ──┼── bridge ``fabric``
    tashi-T-h2  …                                     ── eth0 ──┘   in tashi-T-fab

The bridge in ``tashi-T-fab`` is the "physical" network: every namespace has one address on it
from ``[Cluster] fabric`` (a subnet of 198.18.0.0/15): the cluster manager the first, the root
namespace's veth the last, host *i* the *i*-th after 255. VXLAN between hosts runs over it, so
its MTU leaves room for the 50 bytes of VXLAN headers and VMs keep an MTU of 1500.

Names carry the cluster's tag, so two clusters (or a leftover of a killed one) never collide;
``leftovers`` finds everything of a tag, ``destroy`` removes it. Deleting a namespace deletes its
links (and a veth's peer with it), once no process runs in it any more: the caller stops those
first (``processes_in``). The root namespace's routes and other interfaces are never touched:
the one veth's connected route to the fabric subnet disappears with the veth.

This module is the devcluster's one seam to pyroute2; its failures leave as ``BackendFailure``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from tashi.domain.errors import BackendFailure, InvalidInput

PREFIX = "tashi-"
ALLOWED = ipaddress.ip_network("198.18.0.0/15")
FABRIC_MTU = 1550  # 1500 for the VMs plus VXLAN's 50 bytes of headers
BRIDGE = "fabric"
HOST_OFFSET = 256  # host i is the (256 + i)-th address of the fabric subnet


@contextlib.contextmanager
def _kernel(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as exc:
        raise BackendFailure(f"{what} failed: {exc}") from exc
    except OSError as exc:
        raise BackendFailure(f"{what} failed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Plan:
    """Names and addresses of one cluster's fabric (pure: nothing is made here)."""

    tag: str
    subnet: ipaddress.IPv4Network

    def __post_init__(self) -> None:
        if not self.tag.isalnum() or len(self.tag) > 8:
            raise InvalidInput(f"cluster tag {self.tag!r}: 1 to 8 letters or digits")
        if not self.subnet.subnet_of(ALLOWED):  # type: ignore[arg-type]
            raise InvalidInput(f"fabric {self.subnet} is not inside {ALLOWED}")
        if self.subnet.num_addresses < 2 * HOST_OFFSET:
            raise InvalidInput(f"fabric {self.subnet} is too small: /23 or larger")

    def namespace(self, role: str) -> str:
        return f"{PREFIX}{self.tag}-{role}"

    @property
    def fabric_ns(self) -> str:
        return self.namespace("fab")

    @property
    def cm_ns(self) -> str:
        return self.namespace("cm")

    def host_ns(self, number: int) -> str:
        return self.namespace(f"h{number}")

    @property
    def root_link(self) -> str:
        return f"tsh-{self.tag}"

    @property
    def cm_address(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def root_address(self) -> str:
        return str(self.subnet.broadcast_address - 1)

    def host_address(self, number: int) -> str:
        if not 1 <= number < self.max_hosts:
            raise InvalidInput(f"host {number}: hosts are numbered 1 to {self.max_hosts - 1}")
        return str(self.subnet.network_address + HOST_OFFSET + number)

    @property
    def max_hosts(self) -> int:
        return self.subnet.num_addresses - HOST_OFFSET - 2

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen


def namespaces() -> list[str]:
    with _kernel("listing network namespaces"):
        return sorted(netns.listnetns())


def namespace_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def processes_in(name: str) -> list[int]:
    """Pids of the processes whose network namespace is ``name`` (read from ``/proc``)."""
    inode = namespace_inode(name)
    if inode is None:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == inode:
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


class Fabric:
    """Makes and removes the namespaces and links of one ``Plan``."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def build(self) -> None:
        """The fabric namespace and bridge, the cluster manager's namespace, the root veth."""
        plan = self.plan
        self._new_namespace(plan.fabric_ns)
        with self._ipr(plan.fabric_ns) as fab, _kernel(f"creating bridge {BRIDGE}"):
            # No multicast snooping: VXLAN's multicast group floods to every host.
            fab.link("add", ifname=BRIDGE, kind="bridge", br_mcast_snooping=0)
            fab.link("set", index=fab.link_lookup(ifname=BRIDGE)[0], mtu=FABRIC_MTU, state="up")
        self._leg(plan.cm_ns, "cm", plan.cm_address)
        self._root_leg()

    def add_host(self, number: int) -> str:
        """Namespace ``h<number>`` with an ``eth0`` on the fabric; its name."""
        name = self.plan.host_ns(number)
        self._leg(name, f"h{number}", self.plan.host_address(number))
        return name

    def remove_host(self, number: int) -> None:
        """Delete the host's namespace (its processes must be gone) and its fabric port."""
        self._remove_namespace(self.plan.host_ns(number))
        with self._ipr(self.plan.fabric_ns) as fab:
            _delete(fab, f"h{number}")

    def destroy(self) -> list[str]:
        """Remove every namespace of the tag and the root veth; what could not be removed."""
        left = []
        with IPRoute() as root:
            _delete(root, self.plan.root_link)
        for name in self.leftovers():
            if name.startswith("/run/netns/"):
                ns = name.removeprefix("/run/netns/")
                try:
                    self._remove_namespace(ns)
                except BackendFailure as exc:
                    left.append(exc.message)
            else:
                left.append(f"link {name} is still in the root namespace")
        return left

    def leftovers(self) -> list[str]:
        """Everything of this tag that exists: namespaces (``/run/netns/…``) and root links."""
        found = [
            f"/run/netns/{n}" for n in namespaces() if n.startswith(f"{PREFIX}{self.plan.tag}-")
        ]
        with IPRoute() as root, _kernel("listing links"):
            if root.link_lookup(ifname=self.plan.root_link):
                found.append(self.plan.root_link)
        return found

    # --- pieces -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _ipr(self, name: str) -> Iterator[Any]:
        with _kernel(f"opening netlink in namespace {name}"):
            ipr = IPRoute(netns=name, flags=0)  # flags=0: never create the namespace
        try:
            yield ipr
        finally:
            ipr.close()

    def _new_namespace(self, name: str) -> None:
        if name in namespaces():
            raise BackendFailure(
                f"network namespace {name} exists already (a leftover? `tashi-cluster stop`"
                " with the state directory that made it removes it)"
            )
        with _kernel(f"creating network namespace {name}"):
            netns.create(name)
        with self._ipr(name) as ipr, _kernel(f"bringing lo up in {name}"):
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def _remove_namespace(self, name: str) -> None:
        if name not in namespaces():
            return
        with _kernel(f"removing network namespace {name}"):
            netns.remove(name)

    def _leg(self, name: str, port: str, address: str) -> None:
        """Namespace ``name`` with ``eth0`` (``address``) whose peer ``port`` is on the bridge."""
        self._new_namespace(name)
        with self._ipr(self.plan.fabric_ns) as fab, _kernel(f"wiring {name} to the fabric"):
            fab.link("add", ifname=port, kind="veth", peer={"ifname": "eth0", "net_ns_fd": name})
            bridge = fab.link_lookup(ifname=BRIDGE)[0]
            index = fab.link_lookup(ifname=port)[0]
            fab.link("set", index=index, master=bridge, mtu=FABRIC_MTU, state="up")
        with self._ipr(name) as ipr, _kernel(f"addressing eth0 in {name}"):
            index = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=index, mtu=FABRIC_MTU, state="up")
            ipr.addr("add", index=index, address=address, prefixlen=self.plan.prefixlen)

    def _root_leg(self) -> None:
        """The one link in the root namespace: a veth from the fabric bridge, addressed, so the
        user's ``tashi`` client reaches the cluster manager."""
        plan = self.plan
        with self._ipr(plan.fabric_ns) as fab, _kernel("wiring the root namespace"):
            fab.link(
                "add",
                ifname="root",
                kind="veth",
                peer={"ifname": plan.root_link, "net_ns_pid": os.getpid()},
            )
            index = fab.link_lookup(ifname="root")[0]
            bridge = fab.link_lookup(ifname=BRIDGE)[0]
            fab.link("set", index=index, master=bridge, mtu=FABRIC_MTU, state="up")
        with IPRoute() as root, _kernel(f"addressing {plan.root_link}"):
            index = root.link_lookup(ifname=plan.root_link)[0]
            root.link("set", index=index, mtu=FABRIC_MTU, state="up")
            root.addr("add", index=index, address=plan.root_address, prefixlen=plan.prefixlen)


def add_address(netns_name: str, link: str, address: str, prefixlen: int) -> None:
    """Give ``link`` in namespace ``netns_name`` an address (idempotent)."""
    with IPRoute(netns=netns_name, flags=0) as ipr, _kernel(f"addressing {link} in {netns_name}"):
        index = ipr.link_lookup(ifname=link)[0]
        existing = {a.get("address") for a in ipr.get_addr(index=index)}
        if address not in existing:
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen)


def _delete(ipr: Any, name: str) -> None:
    with _kernel(f"deleting link {name}"):
        found = ipr.link_lookup(ifname=name)
        if found:
            with contextlib.suppress(NetlinkError):  # gone meanwhile with its peer
                ipr.link("del", index=found[0])


def overlapping_routes(subnet: ipaddress.IPv4Network) -> list[str]:
    """Routes of the root namespace that overlap ``subnet`` (read only): another cluster, or
    something of the machine's own, whose addresses the fabric must not shadow."""
    found = []
    with IPRoute() as root, _kernel("reading the root namespace's routes"):
        for route in root.get_routes(family=2):
            dst = route.get("dst")
            if not dst:
                continue
            net = ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False)
            if net.overlaps(subnet):
                found.append(str(net))
    return found
