"""Golden argvs of ``tashi.vmm.qemu.cmdline.build_argv``: each spec gives exactly this list.

The argv goes to ``exec`` as it is, so these lists are what runs: a change here is a change of
every VM's command line and should be one on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tashi.domain.errors import InvalidInput
from tashi.domain.ids import InstanceId
from tashi.vmm.base import BootSpec, DiskSpec, NicSpec, VmSpec
from tashi.vmm.qemu.cmdline import Launch, VmPaths, build_argv

QEMU = Path("/usr/bin/qemu-system-x86_64")
DIR = Path("/var/lib/tashi-nm/vms/7")
TCG = Launch(QEMU, "tcg")


def spec(**changes: object) -> VmSpec:
    base: dict[str, object] = {
        "instance_id": InstanceId(7),
        "name": "web",
        "cores": 1,
        "memory": 256,
        "disks": [DiskSpec(Path("/scratch/7/disk0.qcow2"))],
        "nics": [],
        "state_dir": DIR,
    }
    return VmSpec(**{**base, **changes})  # type: ignore[arg-type]


COMMON = [
    "-nodefaults", "-no-user-config", "-display", "none",
    "-sandbox", "on,obsolete=deny,resourcecontrol=deny", "-msg", "timestamp=on",
    "-daemonize", "-pidfile", f"{DIR}/qemu.pid", "-D", f"{DIR}/qemu.log",
    "-chardev", f"socket,id=qmp,path={DIR}/qmp.sock,server=on,wait=off",
    "-mon", "chardev=qmp,mode=control",
    "-chardev", f"file,id=serial0,path={DIR}/console.log,append=on",
    "-serial", "chardev:serial0",
    "-vnc", f"unix:{DIR}/vnc.sock,password=on",
    "-device", "ide-cd,id=cd0,bus=ide.1,unit=0",
]  # fmt: skip


def test_the_tiny_guest_booted_directly_under_tcg() -> None:
    boot = BootSpec(Path("/img/t.qcow2.kernel"), Path("/img/t.qcow2.initrd"), "console=ttyS0 rw")
    argv = build_argv(spec(boot=boot), TCG, VmPaths(DIR))
    assert argv == [
        str(QEMU), "-name", "tashi-7,process=tashi-7",
        "-M", "pc", "-accel", "tcg", "-smp", "1", "-m", "256",
        *COMMON,
        "-drive", "if=none,id=disk0,file=/scratch/7/disk0.qcow2,format=qcow2",
        "-device", "virtio-blk-pci,drive=disk0,id=vd0",
        "-kernel", "/img/t.qcow2.kernel", "-initrd", "/img/t.qcow2.initrd",
        "-append", "console=ttyS0 rw",
    ]  # fmt: skip


def test_a_bootloader_image_under_kvm_waiting_for_a_migration_in_a_namespace() -> None:
    disks = [
        DiskSpec(Path("/vfs/images/web.img"), format="raw", shared=True),
        DiskSpec(Path("/vfs/images/data.qcow2"), interface="ide", shared=True),
    ]
    launch = Launch(QEMU, "kvm", machine="pc", incoming=True, netns="host3")
    argv = build_argv(spec(cores=4, disks=disks, hints={"cpumodel": "host"}), launch, VmPaths(DIR))
    assert argv == [
        "ip", "netns", "exec", "host3",
        str(QEMU), "-name", "tashi-7,process=tashi-7",
        "-M", "pc", "-accel", "kvm", "-cpu", "host", "-smp", "4", "-m", "256",
        *COMMON,
        "-drive", "if=none,id=disk0,file=/vfs/images/web.img,format=raw",
        "-device", "virtio-blk-pci,drive=disk0,id=vd0,bootindex=0",
        "-drive", "if=none,id=disk1,file=/vfs/images/data.qcow2,format=qcow2",
        "-device", "ide-hd,drive=disk1,bus=ide.0,unit=0,id=hd0",
        "-incoming", "defer",
    ]  # fmt: skip


def test_nics_on_taps_and_through_an_ifup_script() -> None:
    nics = [
        NicSpec("52:54:00:AB:CD:01", 7, "tashi7.0"),
        NicSpec("52:54:00:ab:cd:02", 8, "tashi7.1", ifup_script=Path("/etc/qemu-ifup.8")),
        NicSpec("52:54:00:ab:cd:03", 8, "tashi7.2", model="virtio"),
        NicSpec("52:54:00:ab:cd:04", 9, "tashi7.3", model="e1000"),
    ]
    argv = build_argv(spec(disks=[], nics=nics), TCG, VmPaths(DIR))
    assert argv[argv.index("-netdev") :] == [
        "-netdev", "tap,id=net0,ifname=tashi7.0,script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:ab:cd:01,id=nic0",
        "-netdev", "tap,id=net1,ifname=tashi7.1,script=/etc/qemu-ifup.8,downscript=no",
        "-device", "virtio-net-pci,netdev=net1,mac=52:54:00:ab:cd:02,id=nic1",
        "-netdev", "tap,id=net2,ifname=tashi7.2,script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=net2,mac=52:54:00:ab:cd:03,id=nic2",
        "-netdev", "tap,id=net3,ifname=tashi7.3,script=no,downscript=no",
        "-device", "e1000,netdev=net3,mac=52:54:00:ab:cd:04,id=nic3",
    ]  # fmt: skip


def test_commas_in_paths_cannot_add_options() -> None:
    odd = Path("/tmp/a,b")
    disk = DiskSpec(Path("/scratch/x,format=raw,file=/etc/shadow"))
    argv = build_argv(spec(state_dir=odd, disks=[disk]), TCG, VmPaths(odd))
    assert "socket,id=qmp,path=/tmp/a,,b/qmp.sock,server=on,wait=off" in argv
    assert "unix:/tmp/a,,b/vnc.sock,password=on" in argv
    assert "if=none,id=disk0,file=/scratch/x,,format=raw,,file=/etc/shadow,format=qcow2" in argv
    assert "-pidfile" in argv and "/tmp/a,b/qemu.pid" in argv  # a plain argument: as it is


@pytest.mark.parametrize(
    "changes",
    [
        {"cores": 0},
        {"memory": 8},
        {"disks": [DiskSpec(Path("/d"), format="vmdk")]},
        {"disks": [DiskSpec(Path("/d"), interface="scsi")]},
        {"disks": [DiskSpec(Path(f"/d{i}"), interface="ide") for i in range(3)]},
        {"nics": [NicSpec("52:54:00:00:00:01", 1, "tap,script=/x")]},
        {"nics": [NicSpec("52:54:00:00:00:01", 1, "a-very-long-tap-name")]},
        {"nics": [NicSpec("52:54:00:00:00:01,x=y", 1, "t0")]},
        {"nics": [NicSpec("52:54:00:00:00:01", 1, "t0", model="e1000,x=y")]},
        {"hints": {"cpumodel": "host -device x"}},
        {"state_dir": Path("relative/dir")},
        {"state_dir": Path("/" + "d" * 100)},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_what_cannot_be_escaped_is_refused(changes: dict[str, object]) -> None:
    refused = spec(**changes)
    with pytest.raises(InvalidInput):
        build_argv(refused, TCG, VmPaths(refused.state_dir))
