"""The network driver contract: what a node manager asks of host networking for its VMs.

A network driver connects the NICs of the VMs of one host to their networks. For each NIC the
node manager calls ``attach`` before it starts the VM and hands the returned ``NicSpec`` to the
VMM driver (``tashi.vmm.base``); when the VM has ended (however it ended) it calls ``detach``.
The driver never talks to the cluster manager, never touches the database and never starts VMs.

Networks. A network is known by its ``NetworkId`` (0 to 16777215), which doubles as the VLAN or
VNI number, as in the original Tashi. ``ensure_network`` makes the network usable on this host:
the ``bridge`` driver checks that the network's bridge exists (and creates it when configured to);
a ``vxlan`` driver creates the bridge and the VXLAN device that joins it to the same network on
other hosts. ``attach`` ensures the network itself, so calling ``ensure_network`` first is only
needed to find a misconfigured host early (at start-up, say).

NICs. ``attach(instance_id, nic_index, network_id, mac)`` prepares one NIC and returns either

* a tap the driver made: ``NicSpec(tap=<name>, ifup_script=None)``. The tap is persistent, up,
  and already on the network's bridge; the hypervisor opens it by name and must not run a
  script (QEMU: ``-netdev tap,ifname=<tap>,script=no,downscript=no``); or
* no tap of its own but a script: ``NicSpec(tap=<name>, ifup_script=<path>)``. The hypervisor
  creates the tap under that name and runs the script with the tap's name as its one argument
  (QEMU: ``-netdev tap,ifname=<tap>,script=<path>,downscript=no``). The tap then lives and dies
  with the VM process; the driver owns nothing.

Tap names are deterministic (``taps.tap_name``): the original ``tashi<instanceId>.<nic>`` when it
fits in the kernel's 15 characters, a fixed-length digest otherwise. A VM may have several NICs
(``nic_index`` 0 to ``domain.models.MAX_NICS - 1``), on the same or on different networks.
``attach`` is idempotent: attaching a NIC that is already attached returns the same spec (and
puts the tap back on its bridge if someone took it off).

Ownership and restarts. What a driver made is marked in the kernel, not in a file, so it is
known after the node manager is killed and started again: ``list()`` returns every NIC the
driver made (``Attachment``), and ``adopt(running)`` keeps the NICs of the instances still
running and removes all the others (they belong to VMs that ended while the node manager was
away). ``detach(instance_id)`` removes every tap the driver made for that instance; it is
idempotent, so it is also the clean-up after a crash. Never detach a VM that still runs.

Namespaces. A driver acts in one network namespace, given when it is built (``netns=None``: the
namespace of the node manager). The virtual cluster runs one node manager per namespace; tests
point drivers at namespaces they create. The hypervisor must run in the same namespace, because
a tap is found by its name there.

Errors. Methods raise ``tashi.domain.errors`` categories only: ``InvalidInput`` for a bad
argument (network id, NIC index, MAC); ``Unavailable`` when the host lacks the network and the
driver may not create it (the message names the missing bridge or device); ``BackendFailure``
when the kernel refused (with its message). Foreign exceptions never escape.

Peers (optional capability ``learns_peers``). A driver whose networks span hosts tells the node
manager its own address on the underlay (``underlay_address``; the node reports it to the cluster
manager when it registers and in each heartbeat) and takes the underlay addresses of the other
up hosts that the cluster manager answers with (``set_peers``), so a host added to the cluster is
reached without restarting the others. A driver without the capability answers ``None`` and
ignores ``set_peers``.

Concurrency. Methods are coroutines and may be called concurrently; drivers serialise their
work on the host as they need to. Blocking kernel calls run off the event loop.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from tashi.domain.ids import InstanceId, NetworkId
from tashi.vmm.base import NicSpec

MAX_NETWORK_ID = 16777215  # a VNI has 24 bits; VLANs (12 bits) fit inside


class NetworkCapability(enum.Enum):
    """Optional features a driver may have (``NetworkDriver.capabilities``)."""

    creates_networks = "creates_networks"  # makes a missing network's bridge/devices itself
    ifup_scripts = "ifup_scripts"  # honours the original qemu-ifup.<networkId> scripts
    spans_hosts = "spans_hosts"  # one network is one L2 segment across hosts (vxlan)
    learns_peers = "learns_peers"  # takes the other hosts' underlay addresses (set_peers)


@dataclass(frozen=True, slots=True)
class Attachment:
    """One NIC a driver made, as ``list()`` and ``adopt()`` report it."""

    instance_id: InstanceId
    nic_index: int
    network_id: NetworkId
    mac: str  # the guest's MAC (the tap's own MAC may differ)
    tap: str


class NetworkDriver(Protocol):
    name: str
    capabilities: frozenset[NetworkCapability]

    async def ensure_network(self, network_id: NetworkId) -> None:
        """Make ``network_id`` usable on this host, or raise ``Unavailable`` naming what is
        missing. Idempotent."""

    async def attach(
        self, instance_id: InstanceId, nic_index: int, network_id: NetworkId, mac: str
    ) -> NicSpec:
        """Prepare NIC ``nic_index`` of ``instance_id`` on ``network_id`` with the guest MAC
        ``mac``, and return what the hypervisor needs. Idempotent."""

    async def detach(self, instance_id: InstanceId) -> None:
        """Remove everything the driver made for ``instance_id``. Idempotent; never raises
        for an instance it does not know."""

    async def adopt(self, running: Collection[InstanceId]) -> list[Attachment]:
        """After a node-manager restart: keep the NICs of ``running`` instances (returned),
        detach those of every other instance."""

    async def close(self) -> None:
        """Release the driver's own resources (sockets, threads). The NICs stay."""

    async def underlay_address(self) -> str | None:
        """This host's address on the network that carries the driver's tunnels, for the
        cluster manager to hand to the other hosts; ``None`` without ``learns_peers`` or when
        it cannot be found (logged)."""

    async def set_peers(self, peers: Collection[str]) -> None:
        """The underlay addresses of the other up hosts, as the cluster manager last reported
        them (replacing the previous list; static peers of the settings stay). Idempotent; a
        no-op without ``learns_peers``."""

    # Last, so that ``list[...]`` above still means the builtin to the type checker.
    async def list(self) -> list[Attachment]:
        """Every NIC the driver made that still exists, found in the kernel (not in memory)."""
