"""Volumes in and out of a running QEMU VM, and a copy of a disk as it is now: the QEMU driver's
``attach_disk``, ``detach_disk`` and ``backup_disk`` (``vmm/base.py``).

**Attach**: ``blockdev-add`` opens the file as node ``vol<n>``, ``device_add`` plugs a
virtio-blk device ``volume<n>`` on it into PCI slot ``6 + n`` (``cmdline.volume_slot``), the
place a VM started with the volume has it too. The pc machine signals the new slot through ACPI
PCI hotplug and the guest's kernel finds the disk. If the device cannot be added the node is
deleted again: the VM is as it was.

**Detach**: ``device_del`` asks the guest to let go (ACPI eject); QEMU removes the device only
when the guest has, which ``DEVICE_DELETED`` tells (``vm.QemuVm.unplugged``); then
``blockdev-del`` closes the file. A guest that holds on past the timeout keeps the disk (the
request stays pending in QEMU, and a guest that lets go later still loses it: then
``detach_disk`` again finds it gone and closes the file).

**Backup** (a snapshot of a disk in use): ``blockdev-backup`` with ``sync=full`` into a node
opened on the caller's new qcow2 file. A backup job copies each cluster before the guest
overwrites it, so the copy is the disk as it was when the job started, while the guest runs on
unpaused: crash-consistent, as a power cut at that instant would have left it. The job is not
auto-dismissed, so its end (and its error) is read from ``query-jobs`` before it is dismissed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

from tashi.domain.errors import AlreadyExists, BackendFailure, InvalidInput, InvalidState, NotFound
from tashi.vmm.base import DiskSpec
from tashi.vmm.qemu.cmdline import check_volume_slot, volume_names, volume_slot
from tashi.vmm.qemu.vm import QemuVm

log = logging.getLogger(__name__)

_jobs = itertools.count(1)
_POLL = 0.05  # seconds between two looks at a backup job


def block_name(vm: QemuVm, path: Path) -> str:
    """The name QEMU knows the disk ``path`` of the VM by (a drive id or a volume's node)."""
    plain = [d for d in vm.spec.disks if d.volume is None]
    for index, disk in enumerate(plain):
        if disk.path == path:
            return f"disk{index}"
    for disk in vm.spec.disks:
        if disk.volume is not None and disk.path == path:
            return volume_names(disk.volume)[0]
    raise NotFound(f"instance {vm.iid} has no disk {path}")


async def attach(vm: QemuVm, disk: DiskSpec) -> None:
    if disk.volume is None or not disk.shared or disk.read_only or disk.interface != "virtio":
        raise InvalidInput(f"instance {vm.iid}: only a volume can be hot-plugged")
    for had in vm.spec.disks:
        if had.volume == disk.volume or had.path == disk.path:
            raise AlreadyExists(f"instance {vm.iid} has volume {disk.volume} already")
    check_volume_slot(vm.spec, disk.volume)
    node, device = volume_names(disk.volume)
    file = {"driver": "file", "filename": str(disk.path)}
    await vm.monitor.execute(
        "blockdev-add", {"driver": disk.format, "node-name": node, "file": file}
    )
    try:
        await vm.monitor.execute(
            "device_add",
            {
                "driver": "virtio-blk-pci",
                "drive": node,
                "id": device,
                "addr": volume_slot(disk.volume),
            },
        )
    except BackendFailure:
        await quietly(vm, "blockdev-del", {"node-name": node})
        raise


async def detach(vm: QemuVm, volume: int, timeout: float) -> bool:
    """Whether the VM had the volume (``False``: nothing to do)."""
    node, device = volume_names(volume)
    if not await has_device(vm, device):
        await quietly(vm, "blockdev-del", {"node-name": node})  # a late release's leftover
        return any(d.volume == volume for d in vm.spec.disks)
    await unplug(vm, device, timeout, f"volume {volume}", " (is it mounted?)")
    await vm.monitor.execute("blockdev-del", {"node-name": node})
    return True


async def unplug(vm: QemuVm, device: str, timeout: float, what: str, hint: str = "") -> None:
    """``device_del`` of ``device`` (``what``, for the error), then wait for the guest to let
    it go (QMP's ``DEVICE_DELETED``); ``InvalidState`` if it still has it after ``timeout``."""
    gone = asyncio.get_running_loop().create_future()
    vm.unplugged[device] = gone
    try:
        await vm.monitor.execute("device_del", {"id": device})
        try:
            async with asyncio.timeout(timeout):
                await gone
        except TimeoutError:
            if await has_device(vm, device):
                raise InvalidState(
                    f"instance {vm.iid}: the guest did not let {what} go within"
                    f" {timeout:.0f} s{hint}; it keeps it"
                ) from None
    finally:
        vm.unplugged.pop(device, None)


async def has_device(vm: QemuVm, device: str) -> bool:
    """Whether the VM has a device of that id (a hot-unplug finished when it has not)."""
    found = await vm.monitor.execute("qom-list", {"path": "/machine/peripheral"})
    return any(entry.get("name") == device for entry in found)


async def backup(vm: QemuVm, source: Path, target: Path, timeout: float) -> None:
    name = block_name(vm, source)
    job = f"tashi-backup{next(_jobs)}"
    file = {"driver": "file", "filename": str(target)}
    await vm.monitor.execute("blockdev-add", {"driver": "qcow2", "node-name": job, "file": file})
    try:
        await vm.monitor.execute(
            "blockdev-backup",
            {"job-id": job, "device": name, "target": job, "sync": "full", "auto-dismiss": False},
        )
        try:
            error = await _concluded(vm, job, timeout)
        except BaseException:
            await quietly(vm, "job-cancel", {"id": job, "force": True})
            raise
        finally:
            await _dismiss(vm, job)
        if error is not None:
            raise BackendFailure(f"instance {vm.iid}: copying {source.name} failed: {error}")
    finally:
        await quietly(vm, "blockdev-del", {"node-name": job})


async def _concluded(vm: QemuVm, job: str, timeout: float) -> str | None:
    """Wait for the job to conclude; its error, if it failed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        jobs: list[dict[str, Any]] = await vm.monitor.execute("query-jobs")
        found = next((j for j in jobs if j.get("id") == job), None)
        if found is None:
            return "the job vanished"
        if found.get("status") == "concluded":
            return None if found.get("error") is None else str(found["error"])
        if asyncio.get_running_loop().time() > deadline:
            raise BackendFailure(f"instance {vm.iid}: the copy took longer than {timeout:.0f} s")
        await asyncio.sleep(_POLL)


async def _dismiss(vm: QemuVm, job: str) -> None:
    """Dismiss the job once it has concluded (a cancelled one takes a moment)."""
    for _ in range(100):
        jobs: list[dict[str, Any]] = await vm.monitor.execute("query-jobs")
        found = next((j for j in jobs if j.get("id") == job), None)
        if found is None:
            return
        if found.get("status") == "concluded":
            await quietly(vm, "job-dismiss", {"id": job})
            return
        await asyncio.sleep(_POLL)


async def quietly(vm: QemuVm, command: str, arguments: dict[str, Any]) -> None:
    """A clean-up step whose failure the error being raised, or the outcome, already tells."""
    try:
        await vm.monitor.execute(command, arguments)
    except BackendFailure as exc:
        log.debug("instance %s: %s", vm.iid, exc.message)
