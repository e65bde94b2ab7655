"""The one seam between Tashi and the kernel's netlink (pyroute2): links in one namespace.

``Netlink`` is a small blocking API over ``pyroute2.IPRoute`` with just what the network drivers
need (list links, make bridges, taps, VXLAN devices and veth pairs, put a port on a bridge, a
VXLAN device's flood entries, an IPv4 address, delete). Every pyroute2 or OS
failure leaves this module as ``BackendFailure`` with the kernel's message, ``raise ... from exc``;
nothing else in Tashi imports pyroute2.

``AsyncNetlink`` runs those calls for asyncio code on one worker thread of its own: pyroute2's
calls block (and a tap in another namespace is made by a forked helper), and an ``IPRoute``
socket must not be shared between threads. One thread also makes each call that a driver hands
it atomic with respect to the driver's other calls, which is what keeps two concurrent
``attach``es from both creating one bridge.

Namespaces: ``netns`` names a namespace in ``/run/netns`` (``ip netns``); it must exist (this
module never creates one). ``None`` is the namespace of the calling process.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK

from tashi.domain.errors import BackendFailure, InvalidInput, InvalidState

T = TypeVar("T")

IFNAMSIZ = 15  # longest interface name the kernel accepts (16 bytes with the NUL)
_IFF_UP = 0x1
_IFF_NOARP = 0x80
_ZERO_MAC = "00:00:00:00:00:00"  # a VXLAN FDB entry for floods (head-end replication)
# A link "get" that asks for the link and nothing else. pyroute2's own "get" also sets
# NLM_F_ACK, so the kernel sends an ACK after the answer; pyroute2 (0.9) stops reading at the
# answer and frees the request, and the late ACK lands in the socket's queue of unclaimed
# messages, which nothing reads on a socket that joined no multicast group. One 36-byte message
# per "get" then stays for the socket's life, and each sits in the 256 KiB receive buffer
# asyncio's datagram transport allocated for it (shrunk in place), so the heap before it cannot
# be reused either: about 2 KB of a node manager's memory per "get", 74 KB per VM the vxlan
# driver attached and detached, never given back (issue 26). A "get" needs no ACK: the answer,
# or an error for a missing link, is the reply.
_GET = (RTM_GETLINK, NLM_F_REQUEST)


@dataclass(frozen=True, slots=True)
class Link:
    """What the drivers need to know of one network interface."""

    index: int
    name: str
    kind: str | None  # "bridge", "tun" (taps too), "vxlan", "veth", None for lo/physical
    master: int | None  # index of the bridge it is a port of
    alias: str | None  # IFLA_IFALIAS: where the drivers mark what they made
    mtu: int
    up: bool


class Netlink:
    """Blocking link operations in one namespace. Use from one thread only."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None

    def _where(self) -> str:
        return f" in network namespace {self.netns!r}" if self.netns else ""

    @contextmanager
    def _kernel(self, what: str) -> Iterator[None]:
        try:
            yield
        except NetlinkError as exc:
            raise BackendFailure(f"{what}{self._where()} failed: {_message(exc)}") from exc
        except (OSError, ValueError, TimeoutError) as exc:
            raise BackendFailure(f"{what}{self._where()} failed: {exc}") from exc

    def _socket(self) -> Any:
        if self._ipr is None:
            with self._kernel("opening a netlink socket"):
                # flags=0: never create the namespace (pyroute2's default would).
                self._ipr = IPRoute(netns=self.netns, flags=0) if self.netns else IPRoute()
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            ipr, self._ipr = self._ipr, None
            with self._kernel("closing the netlink socket"):
                ipr.close()

    def links(self) -> list[Link]:
        ipr = self._socket()
        with self._kernel("listing links"):
            return [_link(msg) for msg in ipr.get_links()]

    def find(self, name: str) -> Link | None:
        ipr = self._socket()
        try:
            with self._kernel(f"looking up link {name}"):
                # Not ``link_lookup``/``link("get")``: see ``_GET`` for why no ACK is asked for.
                msgs = ipr.link(_GET, ifname=name)
        except BackendFailure as exc:
            if _is_errno(exc, errno.ENODEV):
                return None
            raise
        return _link(msgs[0]) if msgs else None

    def add_bridge(self, name: str, *, alias: str) -> tuple[Link, bool]:
        """The bridge ``name``, created (up, marked with ``alias``) if missing; and whether
        this call created it. A link of that name that is not a bridge is an error."""
        _check_name(name)
        existing = self.find(name)
        if existing is None:
            ipr = self._socket()
            try:
                with self._kernel(f"creating bridge {name}"):
                    ipr.link("add", ifname=name, kind="bridge")
            except BackendFailure as exc:
                if not _is_errno(exc, errno.EEXIST):  # someone else made it meanwhile
                    raise
            else:
                self.set(name, alias=alias, up=True)
                return self._require(name), True
            existing = self._require(name)
        if existing.kind != "bridge":
            raise BackendFailure(
                f"link {name}{self._where()} exists but is a {existing.kind or 'device'},"
                " not a bridge"
            )
        return existing, False

    def add_vxlan(
        self, name: str, *, vni: int, local: str, port: int, underlay: int | None, alias: str
    ) -> tuple[Link, bool]:
        """The VXLAN device ``name`` (VNI ``vni`` from ``local``:``port``, leaving by link index
        ``underlay``), created down and marked with ``alias`` if missing; and whether this call
        created it. It learns remote MACs; floods go to its all-zero FDB entries only."""
        _check_name(name)
        existing = self.find(name)
        if existing is None:
            ipr = self._socket()
            extra: dict[str, Any] = {} if underlay is None else {"vxlan_link": underlay}
            with self._kernel(f"creating VXLAN device {name}"):
                ipr.link(
                    "add",
                    ifname=name,
                    kind="vxlan",
                    vxlan_id=vni,
                    vxlan_local=local,
                    vxlan_port=port,
                    vxlan_learning=1,
                    **extra,
                )
            self.set(name, alias=alias)
            return self._require(name), True
        if existing.kind != "vxlan":
            raise BackendFailure(
                f"link {name}{self._where()} exists but is a {existing.kind or 'device'},"
                " not a VXLAN device"
            )
        return existing, False

    def ipv4_address(self, name: str) -> str | None:
        """The first IPv4 address of link ``name`` (``None``: it has none)."""
        link = self._require(name)
        with self._kernel(f"listing the addresses of {name}"):
            addrs = self._socket().get_addr(family=socket.AF_INET, index=link.index)
        found = [str(msg.get("IFA_ADDRESS")) for msg in addrs if msg.get("IFA_ADDRESS")]
        return found[0] if found else None

    def flood_peers(self, name: str) -> set[str]:
        """The remote addresses of the all-zero FDB entries of VXLAN device ``name``."""
        link = self._require(name)
        with self._kernel(f"listing the forwarding entries of {name}"):
            entries = self._socket().fdb("dump", ifindex=link.index)
        return {
            str(msg.get("NDA_DST"))
            for msg in entries
            if msg.get("ifindex") == link.index
            and msg.get("NDA_LLADDR") == _ZERO_MAC
            and msg.get("NDA_DST")
        }

    def set_flood_peers(self, name: str, peers: set[str]) -> None:
        """Make the all-zero FDB entries of VXLAN device ``name`` exactly ``peers``."""
        link = self._require(name)
        have = self.flood_peers(name)
        ipr = self._socket()
        for dst in sorted(peers - have):
            with self._kernel(f"adding flood peer {dst} to {name}"):
                ipr.fdb("append", ifindex=link.index, lladdr=_ZERO_MAC, dst=dst)
        for dst in sorted(have - peers):
            with self._kernel(f"removing flood peer {dst} from {name}"):
                ipr.fdb("del", ifindex=link.index, lladdr=_ZERO_MAC, dst=dst)

    def add_tap(self, name: str) -> Link:
        """A new persistent tap ``name`` (down, on no bridge)."""
        _check_name(name)
        ipr = self._socket()
        with self._kernel(f"creating tap {name}"):
            ipr.link("add", ifname=name, kind="tuntap", mode="tap", ifr={"no_pi": True})
        return self._require(name)

    def add_veth(self, name: str, peer: str) -> tuple[Link, bool]:
        """The veth ``name`` (with its ``peer``), created (down) if missing; and whether this
        call created it. A link of that name that is not a veth is an error."""
        _check_name(name)
        _check_name(peer)
        existing = self.find(name)
        if existing is not None:
            if existing.kind != "veth":
                raise BackendFailure(f"link {name}{self._where()} exists but is not a veth")
            return existing, False
        with self._kernel(f"creating veth pair {name}/{peer}"):
            self._socket().link("add", ifname=name, kind="veth", peer={"ifname": peer})
        return self._require(name), True

    def add_ipv4(self, name: str, address: str, prefixlen: int) -> None:
        """Give link ``name`` the IPv4 ``address``/``prefixlen`` unless it has it already."""
        link = self._require(name)
        ipr = self._socket()
        with self._kernel(f"addressing {name}"):
            have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=link.index)}
            if (address, prefixlen) not in have:
                ipr.addr("add", index=link.index, address=address, prefixlen=prefixlen)

    def set(
        self,
        name: str,
        *,
        alias: str | None = None,
        address: str | None = None,
        mtu: int | None = None,
        master: int | None = None,
        up: bool | None = None,
        arp: bool | None = None,
    ) -> None:
        """Change the given attributes of link ``name`` (the others stay)."""
        link = self._require(name)
        if arp is not None:
            with self._kernel(f"turning ARP {'on' if arp else 'off'} on {name}"):
                flags = 0 if arp else _IFF_NOARP
                self._socket().link("set", index=link.index, flags=flags, change=_IFF_NOARP)
        changes: dict[str, Any] = {}
        if alias is not None:
            changes["ifalias"] = alias
        if address is not None:
            changes["address"] = address
        if mtu is not None:
            changes["mtu"] = mtu
        if master is not None:
            changes["master"] = master
        if up is not None:
            changes["state"] = "up" if up else "down"
        if changes:
            with self._kernel(f"setting {', '.join(sorted(changes))} of {name}"):
                self._socket().link("set", index=link.index, **changes)

    def delete(self, name: str) -> bool:
        """Delete link ``name``; ``False`` if there was none."""
        link = self.find(name)
        if link is None:
            return False
        try:
            with self._kernel(f"deleting link {name}"):
                self._socket().link("del", index=link.index)
        except BackendFailure as exc:
            if _is_errno(exc, errno.ENODEV):  # gone meanwhile
                return False
            raise
        return True

    def _require(self, name: str) -> Link:
        link = self.find(name)
        if link is None:
            raise BackendFailure(
                f"link {name}{self._where()} is missing while being set up (the kernel"
                " refused to make it, or something else deleted it)"
            )
        return link


class AsyncNetlink:
    """``Netlink`` for asyncio code: every call runs on this object's one worker thread."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._netlink = Netlink(netns)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tashi-netlink")

        self._closed = False

    async def run(self, call: Callable[[Netlink], T]) -> T:
        """Run ``call(netlink)`` on the worker thread; nothing else runs there meanwhile."""
        if self._closed:
            raise InvalidState("the network driver was closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, self._netlink)

    async def close(self) -> None:
        """Close the socket and end the thread. Idempotent."""
        if self._closed:
            return
        try:
            await self.run(Netlink.close)
        finally:
            self._closed = True
            self._pool.shutdown(wait=False)


def _check_name(name: str) -> None:
    # Checked here because pyroute2 makes taps by ioctl and drops that error on the way back.
    if not 0 < len(name) <= IFNAMSIZ or any(c in name for c in "/: \t\n") or name in (".", ".."):
        raise InvalidInput(f"{name!r} is not an interface name (1 to {IFNAMSIZ} characters)")


def _link(msg: Any) -> Link:
    master = msg.get("master")
    return Link(
        index=int(msg["index"]),
        name=str(msg.get("ifname")),
        kind=msg.get(("linkinfo", "kind")),
        master=int(master) if master else None,
        alias=msg.get("ifalias"),
        mtu=int(msg.get("mtu") or 0),
        up=bool(int(msg["flags"]) & _IFF_UP),
    )


def _message(exc: NetlinkError) -> str:
    code = getattr(exc, "code", None)
    text = exc.args[1] if len(exc.args) > 1 else (errno.errorcode.get(code or 0) or str(exc))
    return f"{text} (errno {code})" if code else str(text)


def _is_errno(exc: BackendFailure, code: int) -> bool:
    cause = exc.__cause__
    return getattr(cause, "code", None) == code or getattr(cause, "errno", None) == code
