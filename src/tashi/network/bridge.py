"""The ``bridge`` network driver: the original Tashi convention, one bridge per network id.

For network ``N`` a NIC is attached in one of two ways (see ``base.py`` for the contract):

* When ``<ifupDir>/qemu-ifup.N`` exists and is executable, the site's script does the work, as
  in the original: the driver makes nothing and returns ``NicSpec(ifup_script=<script>)``; QEMU
  creates the tap and runs the script with the tap's name, and the script puts it on a bridge.
* Otherwise the driver makes a persistent tap named after the instance and NIC (``taps.py``),
  puts it on bridge ``bridgeFormat % N`` (``br7``), brings it up and returns its name. With
  ``createBridges`` (the default) a missing bridge is created, up, with no address and no
  physical port: VMs on one host share the network, and the site (or the virtual cluster)
  wires the bridge to anything beyond. Otherwise a missing bridge is ``Unavailable`` and the
  message names it. Bridges are never deleted: they are host configuration, shared by VMs.

Neighbours: ``netlink.py`` (the kernel, on one worker thread), ``taps.py`` (names, marks, the tap
work it shares with a ``vxlan`` driver), ``tashi.config.network.BridgeSettings``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection
from pathlib import Path

from tashi.config.network import BridgeSettings
from tashi.domain.errors import InvalidInput, Unavailable
from tashi.domain.ids import InstanceId, NetworkId
from tashi.network import taps
from tashi.network.base import MAX_NETWORK_ID, Attachment, NetworkCapability
from tashi.network.netlink import IFNAMSIZ, AsyncNetlink, Link, Netlink
from tashi.vmm.base import NicSpec

log = logging.getLogger(__name__)

# What the kernel accepts in an interface name, less what would need quoting anywhere.
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class BridgeDriver:
    name = "bridge"

    def __init__(self, settings: BridgeSettings, *, netns: str | None = None) -> None:
        self.settings = settings
        self.netns = netns
        _check_format(settings.bridge_format)
        caps = {NetworkCapability.ifup_scripts}
        if settings.create_bridges:
            caps.add(NetworkCapability.creates_networks)
        self.capabilities = frozenset(caps)
        self._netlink = AsyncNetlink(netns)

    def bridge_name(self, network_id: NetworkId) -> str:
        return self.settings.bridge_format % network_id

    def ifup_script(self, network_id: NetworkId) -> Path | None:
        """The site's ``qemu-ifup.<networkId>`` script, if there is an executable one."""
        script = self.settings.ifup_dir / f"qemu-ifup.{network_id}"
        if script.is_file() and os.access(script, os.X_OK):
            return script.absolute()
        return None

    async def ensure_network(self, network_id: NetworkId) -> None:
        taps.check_network(network_id)
        if self.ifup_script(network_id) is None:
            await self._netlink.run(lambda nl: self._bridge(nl, network_id))

    async def attach(
        self, instance_id: InstanceId, nic_index: int, network_id: NetworkId, mac: str
    ) -> NicSpec:
        mac = taps.check(instance_id, nic_index, network_id, mac)
        tap = taps.tap_name(instance_id, nic_index)
        script = self.ifup_script(network_id)
        if script is not None:
            return NicSpec(mac=mac, network=network_id, tap=tap, ifup_script=script)
        attachment = Attachment(instance_id, nic_index, network_id, mac, tap)

        def plug(nl: Netlink) -> None:
            taps.plug(nl, attachment, self._bridge(nl, network_id))

        await self._netlink.run(plug)
        return NicSpec(mac=mac, network=network_id, tap=tap)

    async def detach(self, instance_id: InstanceId) -> None:
        removed = await self._netlink.run(lambda nl: taps.unplug(nl, instance_id))
        if removed:
            log.info("removed taps %s of instance %s", ", ".join(removed), instance_id)

    async def adopt(self, running: Collection[InstanceId]) -> list[Attachment]:
        keep = set(running)
        return await self._netlink.run(lambda nl: taps.keep_only(nl, keep))

    async def close(self) -> None:
        await self._netlink.close()

    async def underlay_address(self) -> str | None:
        return None  # the site's bridges join hosts; no tunnels, no peers

    async def set_peers(self, peers: Collection[str]) -> None:
        """Nothing to do: the site's bridges join the hosts."""

    async def list(self) -> list[Attachment]:
        return await self._netlink.run(taps.owned)

    def _bridge(self, nl: Netlink, network_id: NetworkId) -> Link:
        """The bridge of ``network_id`` (created if allowed); runs on the netlink thread."""
        name = self.bridge_name(network_id)
        if not self.settings.create_bridges:
            bridge = nl.find(name)
            if bridge is None or bridge.kind != "bridge":
                raise Unavailable(self._missing(name, network_id, bridge))
            return bridge
        bridge, created = nl.add_bridge(name, alias=taps.bridge_mark(network_id))
        if created:
            log.info("created bridge %s for network %s%s", name, network_id, self._where())
        return bridge

    def _missing(self, name: str, network_id: NetworkId, found: Link | None) -> str:
        what = "does not exist" if found is None else f"is a {found.kind or 'device'}"
        script = self.settings.ifup_dir / f"qemu-ifup.{network_id}"
        return (
            f"bridge {name} of network {network_id} {what}{self._where()}: create the bridge,"
            f" install an executable {script}, or set [Bridge] createBridges = True"
        )

    def _where(self) -> str:
        return f" in network namespace {self.netns!r}" if self.netns else " on this host"


def _check_format(bridge_format: str) -> None:
    """``bridgeFormat`` must hold one ``%s`` and give valid names for every network id."""
    try:
        longest = bridge_format % MAX_NETWORK_ID
    except (TypeError, ValueError):
        longest = ""
    if bridge_format.count("%s") != 1 or bridge_format.count("%") != 1:
        longest = ""
    if not _IFNAME.fullmatch(longest) or len(longest) > IFNAMSIZ:
        raise InvalidInput(
            f"[Bridge] bridgeFormat = {bridge_format!r} must hold one %s (the network id) and"
            f" give names of at most {IFNAMSIZ} letters, digits, '_', '.' or '-'"
            f" (network {MAX_NETWORK_ID} would be {longest or 'invalid'!r})"
        )
