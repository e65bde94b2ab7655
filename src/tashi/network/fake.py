"""The in-memory network driver: the contract of ``base.py`` with no kernel behind it.

For unit tests of the node manager and for simulations with thousands of hosts. It keeps its
"taps" in a dictionary and names them exactly as the real drivers do, so specs and logs look the
same. ``networks`` are the networks the "host" has; with ``create_networks`` a missing one is
added on first use (like ``createBridges``), otherwise it is ``Unavailable``. ``failing`` lists
networks whose attach fails with ``BackendFailure``, to test the node manager's clean-up. With
``underlay`` it plays a driver that learns its peers (``learns_peers``, like ``vxlan``):
``underlay_address`` answers it and ``peers`` is the last ``set_peers``.

A fake survives a "restart" only if the test hands the same ``state`` to the next instance,
which is how a test plays a node manager that is killed and started again (the real drivers keep
this state in the kernel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from tashi.domain.errors import BackendFailure, Unavailable
from tashi.domain.ids import InstanceId, NetworkId
from tashi.network import taps
from tashi.network.base import Attachment, NetworkCapability
from tashi.vmm.base import NicSpec


@dataclass
class FakeHostState:
    """What the kernel would hold: the host's networks and the taps made on it."""

    networks: set[NetworkId] = field(default_factory=set)
    taps: dict[str, Attachment] = field(default_factory=dict)


class FakeNetworkDriver:
    name = "fake"

    def __init__(
        self,
        networks: Iterable[NetworkId] = (),
        *,
        create_networks: bool = True,
        failing: Iterable[NetworkId] = (),
        state: FakeHostState | None = None,
        underlay: str | None = None,
    ) -> None:
        self.state = state if state is not None else FakeHostState()
        self.state.networks.update(networks)
        self.create_networks = create_networks
        self.failing = set(failing)
        caps = {NetworkCapability.creates_networks} if create_networks else set()
        if underlay is not None:
            caps.add(NetworkCapability.learns_peers)
        self.underlay = underlay
        self.peers: list[str] | None = None  # the last set_peers (learns_peers only)
        self.capabilities = frozenset(caps)
        self._lock = asyncio.Lock()
        self.calls: list[tuple[str, object]] = []  # for tests: what was asked, in order

    async def ensure_network(self, network_id: NetworkId) -> None:
        taps.check_network(network_id)
        self.calls.append(("ensure_network", network_id))
        self._ensure(network_id)

    def _ensure(self, network_id: NetworkId) -> None:
        if network_id in self.state.networks:
            return
        if not self.create_networks:
            raise Unavailable(f"network {network_id} does not exist on this (fake) host")
        self.state.networks.add(network_id)

    async def attach(
        self, instance_id: InstanceId, nic_index: int, network_id: NetworkId, mac: str
    ) -> NicSpec:
        mac = taps.check(instance_id, nic_index, network_id, mac)
        self.calls.append(("attach", (instance_id, nic_index, network_id, mac)))
        async with self._lock:
            self._ensure(network_id)
            if network_id in self.failing:
                raise BackendFailure(f"(fake) the kernel refused a tap on network {network_id}")
            tap = taps.tap_name(instance_id, nic_index)
            self.state.taps[tap] = Attachment(instance_id, nic_index, network_id, mac, tap)
        return NicSpec(mac=mac, network=network_id, tap=tap)

    async def detach(self, instance_id: InstanceId) -> None:
        self.calls.append(("detach", instance_id))
        async with self._lock:
            for tap, attachment in list(self.state.taps.items()):
                if attachment.instance_id == instance_id:
                    del self.state.taps[tap]

    async def adopt(self, running: Collection[InstanceId]) -> list[Attachment]:
        keep = set(running)
        self.calls.append(("adopt", sorted(keep)))
        for instance_id in {a.instance_id for a in self._sorted()} - keep:
            await self.detach(instance_id)
        return [a for a in self._sorted() if a.instance_id in keep]

    async def close(self) -> None:
        self.calls.append(("close", None))

    async def underlay_address(self) -> str | None:
        return self.underlay

    async def set_peers(self, peers: Collection[str]) -> None:
        if self.underlay is not None:
            self.calls.append(("set_peers", sorted(peers)))
            self.peers = sorted(peers)

    def _sorted(self) -> list[Attachment]:
        return sorted(self.state.taps.values(), key=lambda a: (a.instance_id, a.nic_index))

    async def list(self) -> list[Attachment]:
        return self._sorted()
