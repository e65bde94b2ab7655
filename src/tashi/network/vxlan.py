"""The ``vxlan`` network driver: one L2 segment per network id across hosts, made on demand.

For network ``N`` the driver makes, on first use, a bridge ``<bridgePrefix>N`` and a VXLAN device
``<vxlanPrefix>N`` with VNI ``N`` over the host's underlay (``[Vxlan] underlayDevice`` or
``localAddress``), the VXLAN device a port of the bridge. Every VM NIC is a tap on that bridge
(``taps.py``, exactly as the ``bridge`` driver does it), so the VMs of one network on different
hosts are on one Ethernet segment. When the last tap of a network goes (``detach``, ``adopt``)
the bridge and the VXLAN device go too, and ``close`` removes the networks that have no tap left:
a host with no VMs has nothing of Tashi's on it. Networks that still carry taps stay across a
node-manager restart (the VMs use them); the next ``adopt`` or ``detach`` tidies up.

Peers. No multicast: the tunnels are unicast and a broadcast (ARP, DHCP) is copied to every peer
(head-end replication), which is what an all-zero entry in the VXLAN device's forwarding
database means to the kernel. The peers are the static ``[Vxlan] peers`` plus those handed to
``set_peers`` (the node manager passes the underlay addresses its cluster manager reports for the
other up hosts); this host's own address is never one. Unicast frames to a known MAC go only to
the host behind it (the device learns).

Ownership marks (aliases): the bridge carries ``tashi-bridge network=N`` and the VXLAN device
``tashi-vxlan network=N``; only marked devices are ever removed. The MTU of a network is the
underlay's less 50 bytes (VXLAN over IPv4), or ``[Vxlan] mtu``; taps take the bridge's MTU.

Neighbours: ``base.py`` (the contract), ``taps.py`` (tap names, marks, plug/unplug),
``netlink.py`` (the kernel), ``tashi.config.network.VxlanSettings``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Collection, Iterable

from tashi.config.network import VxlanSettings
from tashi.domain.errors import InvalidInput, Unavailable
from tashi.domain.ids import InstanceId, NetworkId
from tashi.network import taps
from tashi.network.base import Attachment, NetworkCapability
from tashi.network.netlink import IFNAMSIZ, AsyncNetlink, Link, Netlink
from tashi.vmm.base import NicSpec

log = logging.getLogger(__name__)

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,6}")  # 7 + 8 digits of a 24-bit id = 15
_VXLAN_MARK = re.compile(r"tashi-vxlan network=(\d+)")
_BRIDGE_MARK = re.compile(r"tashi-bridge network=(\d+)")


def vxlan_mark(network_id: NetworkId) -> str:
    return f"tashi-vxlan network={network_id}"


def parse_peers(text: str) -> set[str]:
    """The addresses of a ``peers`` option (commas or spaces between them)."""
    found = set()
    for word in re.split(r"[\s,]+", text.strip()):
        if word:
            found.add(_ipv4(word, "[Vxlan] peers"))
    return found


def _ipv4(text: str, where: str) -> str:
    try:
        address = ipaddress.IPv4Address(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"{where}: {text!r} is not an IPv4 address") from exc
    if address.is_multicast or address.is_unspecified:
        raise InvalidInput(f"{where}: {text!r} must be a unicast address")
    return str(address)


class VxlanDriver:
    name = "vxlan"
    capabilities = frozenset(
        {
            NetworkCapability.creates_networks,
            NetworkCapability.spans_hosts,
            NetworkCapability.learns_peers,
        }
    )

    def __init__(self, settings: VxlanSettings, *, netns: str | None = None) -> None:
        for what, prefix in (
            ("bridgePrefix", settings.bridge_prefix),
            ("vxlanPrefix", settings.vxlan_prefix),
        ):
            if not _PREFIX.fullmatch(prefix):
                raise InvalidInput(
                    f"[Vxlan] {what} = {prefix!r} must be 1 to 7 letters, digits, '_' or '-',"
                    f" starting with a letter (names are at most {IFNAMSIZ} characters)"
                )
        if settings.bridge_prefix == settings.vxlan_prefix:
            raise InvalidInput("[Vxlan] bridgePrefix and vxlanPrefix must differ")
        self.settings = settings
        self.netns = netns
        self._local: str | None = None
        if settings.local_address:
            self._local = _ipv4(settings.local_address, "[Vxlan] localAddress")
        self._static_peers = parse_peers(settings.peers)
        self._learned: set[str] = set()
        self._netlink = AsyncNetlink(netns)
        self._closed = False

    def bridge_name(self, network_id: NetworkId) -> str:
        return f"{self.settings.bridge_prefix}{network_id}"

    def vxlan_name(self, network_id: NetworkId) -> str:
        return f"{self.settings.vxlan_prefix}{network_id}"

    def peers(self) -> set[str]:
        """The hosts floods go to: static and learned, without this host."""
        return (self._static_peers | self._learned) - {self._local or ""}

    async def set_peers(self, peers: Iterable[str]) -> None:
        """Replace the learned peers (the other up hosts' underlay addresses) and update the
        flood entries of every network on this host. Idempotent."""
        learned = {_ipv4(p, "peer address") for p in peers}
        if learned == self._learned:
            return
        self._learned = learned
        await self._netlink.run(self._sync_all_peers)

    async def local_address(self) -> str:
        """This host's underlay address (from the settings, or the underlay device)."""
        return await self._netlink.run(self._local_address)

    async def underlay_address(self) -> str | None:
        """``local_address``, or ``None`` (logged) while the underlay has no address."""
        try:
            return await self.local_address()
        except Unavailable as exc:
            log.warning("cannot tell the cluster manager this host's underlay: %s", exc.message)
            return None

    async def ensure_network(self, network_id: NetworkId) -> None:
        taps.check_network(network_id)
        await self._netlink.run(lambda nl: self._network(nl, network_id))

    async def attach(
        self, instance_id: InstanceId, nic_index: int, network_id: NetworkId, mac: str
    ) -> NicSpec:
        mac = taps.check(instance_id, nic_index, network_id, mac)
        tap = taps.tap_name(instance_id, nic_index)
        attachment = Attachment(instance_id, nic_index, network_id, mac, tap)

        def plug(nl: Netlink) -> None:
            taps.plug(nl, attachment, self._network(nl, network_id))

        await self._netlink.run(plug)
        return NicSpec(mac=mac, network=network_id, tap=tap)

    async def detach(self, instance_id: InstanceId) -> None:
        def unplug(nl: Netlink) -> list[str]:
            removed = taps.unplug(nl, instance_id)
            self._remove_unused(nl)
            return removed

        removed = await self._netlink.run(unplug)
        if removed:
            log.info("removed taps %s of instance %s", ", ".join(removed), instance_id)

    async def adopt(self, running: Collection[InstanceId]) -> list[Attachment]:
        keep = set(running)

        def reconcile(nl: Netlink) -> list[Attachment]:
            kept = taps.keep_only(nl, keep)
            self._remove_unused(nl)
            self._sync_all_peers(nl)
            return kept

        return await self._netlink.run(reconcile)

    async def close(self) -> None:
        """Remove the networks no tap uses any more, then release the netlink socket.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._netlink.run(self._remove_unused)
        finally:
            await self._netlink.close()

    # On the netlink thread from here on.

    def _local_address(self, nl: Netlink) -> str:
        if self._local is not None:
            return self._local
        device = self.settings.underlay_device
        if not device:
            raise Unavailable(
                "the vxlan driver needs this host's underlay: set [Vxlan] localAddress or"
                " underlayDevice"
            )
        if nl.find(device) is None:
            raise Unavailable(f"[Vxlan] underlayDevice {device} does not exist{self._where()}")
        address = nl.ipv4_address(device)
        if address is None:
            raise Unavailable(f"[Vxlan] underlayDevice {device} has no IPv4 address{self._where()}")
        self._local = address
        return address

    def _network(self, nl: Netlink, network_id: NetworkId) -> Link:
        """The bridge of ``network_id`` with its VXLAN device, both made if missing."""
        local = self._local_address(nl)
        underlay = nl.find(self.settings.underlay_device) if self.settings.underlay_device else None
        bridge_name, vxlan_name = self.bridge_name(network_id), self.vxlan_name(network_id)
        bridge, made_bridge = nl.add_bridge(bridge_name, alias=taps.bridge_mark(network_id))
        vxlan, made_vxlan = nl.add_vxlan(
            vxlan_name,
            vni=network_id,
            local=local,
            port=self.settings.port,
            underlay=underlay.index if underlay is not None else None,
            alias=vxlan_mark(network_id),
        )
        if made_vxlan or vxlan.master != bridge.index or not vxlan.up:
            mtu = self.settings.mtu or (
                (underlay.mtu if underlay is not None else 1500) - VXLAN_OVERHEAD
            )
            nl.set(vxlan_name, mtu=mtu, master=bridge.index, up=True)
            nl.set(bridge_name, mtu=mtu)
            nl.set_flood_peers(vxlan_name, self.peers())
        if made_bridge or made_vxlan:
            log.info(
                "created network %s: bridge %s, VXLAN %s (VNI %s) from %s:%s%s",
                network_id,
                bridge_name,
                vxlan_name,
                network_id,
                local,
                self.settings.port,
                self._where(),
            )
        return nl.find(bridge_name) or bridge

    def _networks(self, nl: Netlink) -> dict[NetworkId, list[Link]]:
        """The devices this driver made, by network (found by their marks and names)."""
        found: dict[NetworkId, list[Link]] = {}
        for link in nl.links():
            if link.kind == "vxlan":
                match = _VXLAN_MARK.fullmatch(link.alias or "")
                name = self.vxlan_name
            elif link.kind == "bridge":
                match = _BRIDGE_MARK.fullmatch(link.alias or "")
                name = self.bridge_name
            else:
                continue
            if match is not None:
                network_id = NetworkId(int(match.group(1)))
                if link.name == name(network_id):
                    found.setdefault(network_id, []).append(link)
        return found

    def _remove_unused(self, nl: Netlink) -> None:
        """Delete the bridge and VXLAN device of every network no tap of ours is on."""
        used = {a.network_id for a in taps.owned(nl)}
        for network_id, devices in self._networks(nl).items():
            if network_id in used:
                continue
            for device in devices:
                nl.delete(device.name)
            log.info("removed network %s (no VM uses it)%s", network_id, self._where())

    def _sync_all_peers(self, nl: Netlink) -> None:
        peers = self.peers()
        for devices in self._networks(nl).values():
            for device in devices:
                if device.kind == "vxlan":
                    nl.set_flood_peers(device.name, peers)

    def _where(self) -> str:
        return f" in network namespace {self.netns!r}" if self.netns else ""

    # Last, so that ``list[...]`` above still means the builtin to the type checker.
    async def list(self) -> list[Attachment]:
        return await self._netlink.run(taps.owned)
