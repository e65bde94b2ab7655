"""Volumes on QEMU's command line (``cmdline._volumes``): where a VM started with a volume has
it, which must be exactly where ``hotplug.attach`` puts one in a running VM (the golden argv
here, the live check in ``test_contract_volumes.py``'s migration), and the refusals.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tashi.domain.errors import InvalidInput
from tashi.vmm.base import DiskSpec, NicSpec
from tashi.vmm.qemu.cmdline import (
    VmPaths,
    build_argv,
    check_volume_slot,
    next_auto_slot,
    volume_slot,
)
from tests.vmm.test_cmdline import COMMON, DIR, QEMU, TCG, spec

ROOT = DiskSpec(Path("/images/r-1-7-disk0.qcow2"), shared=True)
DATA = DiskSpec(Path("/store/volumes/vol-a1.qcow2"), shared=True, volume=5)
LOGS = DiskSpec(Path("/store/volumes/vol-b,2.qcow2"), format="raw", shared=True, volume=1)
NIC = NicSpec(mac="52:54:00:00:00:07", network=1, tap="tashi7.0")


def test_volumes_come_last_in_their_fixed_slots() -> None:
    argv = build_argv(spec(disks=[ROOT, DATA, LOGS], nics=[NIC]), TCG, VmPaths(DIR))
    assert argv == [
        str(QEMU), "-name", "tashi-7,process=tashi-7",
        "-M", "pc", "-accel", "tcg", "-smp", "1", "-m", "256",
        *COMMON,
        "-drive", "if=none,id=disk0,file=/images/r-1-7-disk0.qcow2,format=qcow2",
        "-device", "virtio-blk-pci,drive=disk0,id=vd0,bootindex=0",
        "-netdev", "tap,id=net0,ifname=tashi7.0,script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:07,id=nic0",
        "-blockdev",
        "driver=qcow2,node-name=vol5,file.driver=file,file.filename=/store/volumes/vol-a1.qcow2",
        "-device", "virtio-blk-pci,drive=vol5,id=volume5,addr=0x0b",
        "-blockdev",
        "driver=raw,node-name=vol1,file.driver=file,file.filename=/store/volumes/vol-b,,2.qcow2",
        "-device", "virtio-blk-pci,drive=vol1,id=volume1,addr=0x07",
    ]  # fmt: skip


def test_slots_run_from_7_for_b_to_31_for_z() -> None:
    assert (volume_slot(1), volume_slot(25)) == ("0x07", "0x1f")


def test_a_volume_must_fit_above_the_vms_own_devices() -> None:
    many = [DiskSpec(Path(f"/s/d{i}.qcow2")) for i in range(4)]
    nics = [NicSpec(mac=f"52:54:00:00:00:0{i}", network=1, tap=f"t{i}") for i in range(2)]
    crowded = spec(disks=many, nics=nics)  # slots 2 to 7
    with pytest.raises(InvalidInput, match="/dev/sdc or a later letter"):
        check_volume_slot(crowded, 1)
    check_volume_slot(crowded, 2)
    with pytest.raises(InvalidInput):
        check_volume_slot(crowded, 26)


@pytest.mark.parametrize(
    "disks",
    [
        [ROOT, DATA, DiskSpec(Path("/store/volumes/other.qcow2"), shared=True, volume=5)],
        [ROOT, DiskSpec(DATA.path, read_only=True, volume=5)],
        [ROOT, DiskSpec(DATA.path, interface="ide", volume=5)],
    ],
)
def test_two_disks_one_volume_or_a_volume_that_is_not_a_plain_virtio_disk_are_refused(
    disks: list[DiskSpec],
) -> None:
    with pytest.raises(InvalidInput):
        build_argv(spec(disks=disks), TCG, VmPaths(DIR))


def test_a_hot_plugged_nic_takes_the_slot_qemu_gives_the_next_device() -> None:
    """``nics.attach`` puts NIC ``n`` where a VM started with it has it: after the VM's own
    disks and NICs (2, 3, … in argv order), never in a volume's slot."""
    assert next_auto_slot(spec(disks=[ROOT], nics=[NIC])) == "0x04"
    assert next_auto_slot(spec(disks=[ROOT, DATA], nics=[NIC])) == "0x04"  # vdf sits at 0x0b
    ide = DiskSpec(Path("/s/ide.qcow2"), interface="ide")  # on the IDE bus, no PCI slot
    assert next_auto_slot(spec(disks=[ROOT, ide], nics=[])) == "0x03"
    near = DiskSpec(Path("/store/volumes/vol-c.qcow2"), shared=True, volume=1)  # slot 7
    many = [DiskSpec(Path(f"/s/d{i}.qcow2")) for i in range(3)]
    full = spec(disks=[*many, near], nics=[NIC, replace(NIC, mac="52:54:00:00:00:08")])
    with pytest.raises(InvalidInput, match="no PCI slot left"):
        next_auto_slot(full)  # 2..6 taken, 7 is vdb's
