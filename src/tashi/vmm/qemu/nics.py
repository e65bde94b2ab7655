"""NICs in and out of a running QEMU VM: the QEMU driver's ``attach_nic`` and ``detach_nic``
(``vmm/base.py``); ``hotplug.py`` does the same for volumes.

**Attach**: ``netdev_add`` opens the tap as backend ``net<n>`` (``n``: the VM's NIC count, so
the names are those ``cmdline._nics`` gives a VM started with the NIC), ``device_add`` plugs a
virtio-net device ``nic<n>`` with the NIC's MAC into the PCI slot QEMU gives the device after
the VM's own disks and NICs when it is on the command line (``cmdline.next_auto_slot``): a VM
started with all its NICs (a start after a stop, a migration target) has the same hardware, so
the two migrate to each other. The pc machine signals the new slot through ACPI PCI hotplug and
the guest's kernel finds the device. If the device cannot be added the backend is deleted
again: the VM is as it was.

**Detach** (the last NIC only): ``device_del`` asks the guest to let go (ACPI eject); QEMU
removes the device only when the guest has, which ``DEVICE_DELETED`` tells
(``vm.QemuVm.unplugged``); then ``netdev_del`` closes the tap.
"""

from __future__ import annotations

from typing import Any

from tashi.domain.errors import AlreadyExists, BackendFailure, InvalidInput
from tashi.vmm.base import NicSpec
from tashi.vmm.qemu.cmdline import NIC_MODELS, check_nic, next_auto_slot
from tashi.vmm.qemu.hotplug import has_device, quietly, unplug
from tashi.vmm.qemu.vm import QemuVm


def nic_names(index: int) -> tuple[str, str]:
    """The backend and the device of NIC ``index`` (as ``cmdline._nics`` names them)."""
    return f"net{index}", f"nic{index}"


async def attach(vm: QemuVm, nic: NicSpec) -> None:
    check_nic(nic, f"instance {vm.iid}")
    for had in vm.spec.nics:
        if had.mac.lower() == nic.mac.lower() or had.tap == nic.tap:
            raise AlreadyExists(f"instance {vm.iid} has a NIC {nic.mac} (tap {nic.tap}) already")
    slot = next_auto_slot(vm.spec)
    backend, device = nic_names(len(vm.spec.nics))
    netdev: dict[str, Any] = {
        "type": "tap",
        "id": backend,
        "ifname": nic.tap,
        "script": "no" if nic.ifup_script is None else str(nic.ifup_script),
        "downscript": "no",
    }
    await vm.monitor.execute("netdev_add", netdev)
    try:
        await vm.monitor.execute(
            "device_add",
            {
                "driver": NIC_MODELS.get(nic.model, nic.model),
                "netdev": backend,
                "mac": nic.mac.lower(),
                "id": device,
                "addr": slot,
            },
        )
    except BackendFailure:
        await quietly(vm, "netdev_del", {"id": backend})
        raise


async def detach(vm: QemuVm, mac: str, timeout: float) -> bool:
    """Whether the VM had the NIC ``mac`` (``False``: nothing to do)."""
    index = next((i for i, n in enumerate(vm.spec.nics) if n.mac.lower() == mac.lower()), None)
    if index is None:
        return False
    if index != len(vm.spec.nics) - 1:
        raise InvalidInput(
            f"instance {vm.iid}: NIC {mac} is not its last one; only the last NIC is unplugged"
        )
    backend, device = nic_names(index)
    if await has_device(vm, device):
        await unplug(vm, device, timeout, f"NIC {mac}")
    await quietly(vm, "netdev_del", {"id": backend})  # gone already after a late release
    return True
