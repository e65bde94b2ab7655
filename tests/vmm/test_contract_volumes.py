"""The VMM driver contract for volumes (``attach_disk``, ``detach_disk``, ``backup_disk``), over
every driver: the fake and QEMU.

QEMU runs the tiny guest, whose kernel takes ACPI PCI hotplug and whose init prints a
``TASHI-GUEST-DISK`` marker for each disk that comes or goes after boot: so the guest is seen to
find the volume, and to let it go. A VM adopted by a new driver keeps its volume; a VM started
with a volume (a start after a stop, a migration target) has it where a hot-plug put it, so a VM
with a hot-plugged volume migrates to a target started with it.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound
from tashi.images import markers
from tashi.runtime.ports import free_port
from tashi.vmm.base import DiskSpec, ExitReason, MigrationTicket, VmmDriver
from tashi.vmm.base import VmState as S
from tashi.vmm.fake import FakeDriver
from tests.vmm.lab import Lab, next_exit, next_id, wait_marker

pytestmark = pytest.mark.anyio

MIB = 2**20
TIMEOUT = 30.0


def new_volume(lab: Lab, name: str, size_mb: int = 16) -> Path:
    path = lab.root / f"{name}.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{size_mb}M"], check=True
    )
    return path


async def disks_of(driver: VmmDriver) -> list[DiskSpec]:
    [status] = await driver.list()
    return list(status.spec.disks)


async def test_a_volume_comes_and_goes_and_the_guest_sees_both(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    iid = spec.instance_id
    await driver.start(spec)
    await wait_marker(driver, iid, markers.UP)
    volume = DiskSpec(new_volume(lab, "data", 16), shared=True, volume=5)  # /dev/sdf

    await driver.attach_disk(iid, volume)
    added = await wait_marker(driver, iid, markers.DISK)
    assert (added.fields["action"], added.fields["name"]) == ("add", "vdb")
    assert int(added.fields["size"]) in (16 * MIB, volume.path.stat().st_size)
    assert (await disks_of(driver))[-1] == volume
    with pytest.raises(AlreadyExists):
        await driver.attach_disk(iid, volume)
    with pytest.raises(InvalidInput):  # not a volume
        await driver.attach_disk(iid, DiskSpec(new_volume(lab, "plain"), shared=True))

    adopter = lab.driver()  # a restarted node manager finds the VM with its volume
    [adopted] = await adopter.adopt([spec.state_dir])
    assert adopted.spec.disks[-1] == volume
    await adopter.close()

    await driver.detach_disk(iid, 5, TIMEOUT)
    removed = await wait_marker(driver, iid, markers.DISK, count=2)
    assert (removed.fields["action"], removed.fields["name"]) == ("remove", "vdb")
    assert volume not in await disks_of(driver)
    await driver.detach_disk(iid, 5, TIMEOUT)  # gone already: no error
    await driver.attach_disk(iid, volume)  # and back again
    await wait_marker(driver, iid, markers.DISK, count=3)
    await driver.destroy(iid)
    assert (await next_exit(driver, iid)).reason is ExitReason.destroyed
    await driver.close()


async def test_a_running_vms_disk_is_copied_as_it_is(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    iid = spec.instance_id
    await driver.start(spec)
    source = new_volume(lab, "source", 8)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 64k", str(source)],
        check=True,
        capture_output=True,
    )
    volume = DiskSpec(source, shared=True, volume=2)
    await driver.attach_disk(iid, volume)
    target = new_volume(lab, "copy", 8)
    await driver.backup_disk(iid, source, target, TIMEOUT)
    if lab.kind == "qemu":
        read = ["qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 1M 64k", str(target)]
        assert (
            "read 65536/65536"
            in subprocess.run(read, check=True, capture_output=True, text=True).stdout
        )
    with pytest.raises(NotFound):
        await driver.backup_disk(iid, lab.root / "nothing.qcow2", target, TIMEOUT)
    await driver.destroy(iid)
    await driver.close()


async def test_a_guest_that_holds_on_keeps_its_volume(lab: Lab) -> None:
    """A guest that never lets the disk go (here: one whose PCI bus is not ACPI's, so the eject
    request never reaches it) keeps it, and the detach says so when its time is up."""
    driver = lab.driver()
    spec = lab.spec(next_id(), kernel_args="pci=noacpi")
    await driver.start(spec)
    if isinstance(driver, FakeDriver):
        driver.held_disks.add(3)
    else:
        await wait_marker(driver, spec.instance_id, markers.UP)
    volume = DiskSpec(new_volume(lab, "held"), shared=True, volume=3)
    await driver.attach_disk(spec.instance_id, volume)
    with pytest.raises(InvalidState):
        await driver.detach_disk(spec.instance_id, 3, 2.0)
    assert volume in await disks_of(driver)
    await driver.destroy(spec.instance_id)
    await driver.close()


async def test_only_running_or_paused_vms_take_volumes(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id(), disks=0)
    volume = DiskSpec(new_volume(lab, "late"), shared=True, volume=1)
    with pytest.raises(NotFound):
        await driver.attach_disk(spec.instance_id, volume)
    await driver.start(spec, incoming=MigrationTicket("127.0.0.1", free_port()))
    with pytest.raises(InvalidState):
        await driver.attach_disk(spec.instance_id, volume)
    await driver.destroy(spec.instance_id)
    await driver.close()


async def test_a_vm_migrates_with_its_hot_plugged_volume(lab: Lab) -> None:
    source, target = lab.driver(), lab.driver()
    spec = lab.spec(next_id(), where="source", shared=(True,))
    iid = spec.instance_id
    await source.start(spec)
    up = await wait_marker(source, iid, markers.UP)
    volume = DiskSpec(new_volume(lab, "moving"), shared=True, volume=6)
    await source.attach_disk(iid, volume)
    await wait_marker(source, iid, markers.DISK)

    ticket = MigrationTicket("127.0.0.1", free_port())
    moved = lab.spec(iid, where="target", shared=(True,))
    arriving = replace(moved, disks=(*spec.disks, volume))  # the same shared files
    await target.start(arriving, incoming=ticket)
    await source.migrate(iid, ticket)
    assert (await next_exit(source, iid)).reason is ExitReason.migrated
    landed = await target.finish_incoming(iid)
    assert landed.state is S.running
    assert landed.spec.disks[-1] == volume
    await target.detach_disk(iid, 6, TIMEOUT)  # the guest, moved, still lets it go
    if lab.kind == "qemu":
        await wait_marker(target, iid, markers.DISK)
    assert up.kind == markers.UP
    await target.destroy(iid)
    await source.close()
    await target.close()
