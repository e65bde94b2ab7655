"""NICs hot-plugged into and out of a VM this node runs: ``NodeService.attach_nic`` and
``detach_nic`` (``service.py``) are these, as ``attach_disk`` is for volumes.

**Attach** does for one NIC what a start does for each: the network driver makes its tap on the
network's bridge (``NetworkDriver.attach``, with the NIC's index after the VM's last), the
security groups guard it and the metadata service serves on it (both told of the VM's taps,
``TapFirewall.attach`` adds only the new one), then the VMM driver plugs it into the VM
(``VmmDriver.attach_nic``). The VM's recorded instance has the NIC from then on (``VmDirs``
keeps it), so a restarted node manager re-adopts the VM with it, and a migration target starts
with it.

**Detach** takes the last NIC out of the VM once its guest lets go, and out of the recorded
instance. Its tap stays on the host, guarded, until the VM ends (the network driver removes a
VM's taps together, ``NetworkDriver.detach``); a NIC added again at that index takes it back
(``attach`` is idempotent).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from tashi.domain.errors import InvalidInput, InvalidState
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import MAX_NICS, Instance, NicConfig
from tashi.network.base import Attachment
from tashi.vmm.base import Capability, NicSpec

if TYPE_CHECKING:
    from tashi.nodemanager.service import NodeService


async def _taps(node: NodeService, iid: InstanceId) -> list[NicSpec]:
    """The NICs the VMM driver runs the VM with, in order."""
    for status in await node.driver.list():
        if status.instance_id == iid:
            return list(status.spec.nics)
    raise InvalidState(f"instance {iid} has no VM on this host")


def attachments(iid: InstanceId, nics: list[NicSpec]) -> list[Attachment]:
    """The taps of a VM's NICs, as the security groups and the metadata service are told of
    them (an ifup script's tap is QEMU's, made later: not among them)."""
    return [
        Attachment(iid, index, NetworkId(nic.network), nic.mac, nic.tap)
        for index, nic in enumerate(nics)
        if nic.ifup_script is None
    ]


async def attach(node: NodeService, iid: InstanceId, nic: NicConfig) -> Instance:
    """Hot-plug ``nic`` into the running VM as its last NIC; the instance as the node now
    records it. A NIC (its MAC) the VM has already is a retry: nothing changes."""
    node.need(Capability.nic_hotplug, "hot-plug NICs")
    vm = node.running(iid)
    if vm.busy:
        raise InvalidState(f"instance {iid} is {vm.busy}")
    if any(n.mac.lower() == nic.mac.lower() for n in vm.instance.nics):
        return vm.instance
    index = len(vm.instance.nics)
    if index >= MAX_NICS:
        raise InvalidInput(f"instance {iid} has {MAX_NICS} NICs, the most a VM has")
    spec = await node.network.attach(iid, index, NetworkId(nic.network), nic.mac)
    instance = replace(vm.instance, nics=(*vm.instance.nics, nic))
    taps = attachments(iid, [*await _taps(node, iid), spec])
    if node.firewall is not None:
        await node.firewall.attach(instance, taps)
    if node.metadata is not None:
        await node.metadata.attach(instance, [t for t in taps if t.nic_index == index])
    await node.driver.attach_nic(iid, spec)
    vm.instance = instance
    await asyncio.to_thread(node.dirs.create, instance)
    return instance


async def detach(node: NodeService, iid: InstanceId, mac: str, timeout: float) -> Instance:
    """Hot-unplug the VM's last NIC ``mac`` once the guest lets it go (``InvalidState`` after
    ``timeout`` seconds: it keeps it); a NIC the VM does not have is no error."""
    node.need(Capability.nic_hotplug, "hot-unplug NICs")
    vm = node.running(iid)
    if vm.busy:
        raise InvalidState(f"instance {iid} is {vm.busy}")
    macs = [n.mac.lower() for n in vm.instance.nics]
    if mac.lower() not in macs:
        return vm.instance
    if macs.index(mac.lower()) != len(macs) - 1:
        raise InvalidInput(f"instance {iid}: NIC {mac} is not its last one")
    await node.driver.detach_nic(iid, mac, timeout)
    vm.instance = replace(vm.instance, nics=vm.instance.nics[:-1])
    await asyncio.to_thread(node.dirs.create, vm.instance)
    return vm.instance
