"""The argv of one QEMU process: a pure function of the VM's spec and the host's choices.

``build_argv(spec, launch, paths)`` returns a list handed to ``exec`` as it is: no shell ever
parses it, and every value that goes inside a ``key=value,...`` option has its commas doubled
(QEMU's escape), so a path cannot smuggle in an option. Names and numbers that could not be
escaped (tap names, MACs, models, the ``cpumodel`` hint) are checked against what they may be
and refused with ``InvalidInput``. ``tests/vmm/test_cmdline.py`` holds the golden argvs.

What every VM gets, and why:

* ``-daemonize -pidfile``: qemu returns once it is initialised (disks open, sockets listening)
  and lives on in a session of its own, re-parented away from the node manager, so a node
  manager killed with SIGKILL leaves it running; ``-D qemu.log`` then receives its messages.
* ``-nodefaults -no-user-config -display none``: only the devices listed here.
* QMP on ``<state_dir>/qmp.sock`` (the only control channel; no human monitor anywhere).
* the serial console appended to ``<state_dir>/console.log`` by qemu itself, so it keeps
  logging while no node manager runs, and a restored VM continues the same file.
* VNC on ``<state_dir>/vnc.sock`` with ``password=on`` and no password set: nobody can log in
  until ``startVnc`` sets a one-time one. No TCP port is opened by default.
* an empty IDE CD drive (``cd0``) for ``changeCdrom``.
* disks as ``-drive if=none`` (named block backends, which QEMU 7.2's block migration needs to
  carry node-local overlays) plus a ``-device``; NICs as ``-netdev tap`` plus a ``-device``.
* volumes (``DiskSpec.volume``) last, as ``-blockdev`` node ``vol<n>`` and a virtio-blk device
  ``volume<n>`` in PCI slot ``6 + n``, exactly as ``hotplug.py`` plugs one into a running VM: a
  VM started with a volume and one it was hot-plugged into have the same hardware, so either
  migrates to the other. The slots of the other devices are QEMU's choice (2, 3, … in argv
  order), which volumes leave alone: a VM may have at most ``4 + n`` of them besides volume
  ``n``.
* ``-sandbox on,obsolete=deny,resourcecontrol=deny``: seccomp. ``spawn=deny`` and
  ``elevateprivileges=deny`` both kill ``-daemonize`` on QEMU 7.2 (tried), and a
  ``qemu-ifup`` script needs ``spawn`` anyway.
* ``-incoming defer`` for a VM that waits for a migration or a restore stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tashi.domain.errors import InvalidInput
from tashi.images.boot import DirectBoot
from tashi.vmm.base import NicSpec, VmSpec

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL
_TAP = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_MODEL = re.compile(r"[a-z0-9][a-z0-9-]*")
_CPU = re.compile(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.+=-]+)*")
NIC_MODELS = {"virtio": "virtio-net-pci"}  # the original nicModel hint's short name
_DISK_FORMATS = ("qcow2", "raw")
_IDE_DISKS = 2  # ide.0 has two units; ide.1 holds the CD drive
VOLUME_SLOT_BASE = 6  # volume n (1..25) sits in PCI slot 6 + n: 7 to 31, the top of the bus
FIRST_AUTO_SLOT = 2  # pc: 0 is the host bridge, 1 the PIIX3; -nodefaults adds no VGA


@dataclass(frozen=True, slots=True)
class VmPaths:
    """The files of one VM in its ``state_dir`` (the directory the node manager gave it)."""

    state_dir: Path

    @property
    def qmp(self) -> Path:
        return self.state_dir / "qmp.sock"

    @property
    def vnc(self) -> Path:
        return self.state_dir / "vnc.sock"

    @property
    def console(self) -> Path:
        return self.state_dir / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "qemu.pid"

    @property
    def log(self) -> Path:
        return self.state_dir / "qemu.log"

    @property
    def state(self) -> Path:
        return self.state_dir / "qemu.json"

    def made(self) -> tuple[Path, ...]:
        """What the driver removes when the VM ends (the two logs stay)."""
        return (self.qmp, self.vnc, self.pidfile, self.state)


@dataclass(frozen=True, slots=True)
class Launch:
    """The host's side of the command line."""

    qemu_bin: Path
    accel: str  # "kvm" or "tcg"
    machine: str = "pc"
    incoming: bool = False  # -incoming defer: wait for a migration or restore stream
    netns: str | None = None  # run qemu in this network namespace (where its taps are)
    hold: bool = False  # -S: make everything but do not run the CPUs (waiting for a boot slot)


def build_argv(spec: VmSpec, launch: Launch, paths: VmPaths) -> list[str]:
    """The whole argv, program first."""
    _check(spec, paths)
    iid = int(spec.instance_id)
    argv = [] if launch.netns is None else ["ip", "netns", "exec", launch.netns]
    argv += [str(launch.qemu_bin), "-name", f"tashi-{iid},process=tashi-{iid}"]
    argv += ["-M", launch.machine, "-accel", launch.accel, *_cpu(spec)]
    argv += ["-smp", str(spec.cores), "-m", str(spec.memory)]
    argv += ["-nodefaults", "-no-user-config", "-display", "none"]
    argv += ["-sandbox", "on,obsolete=deny,resourcecontrol=deny", "-msg", "timestamp=on"]
    argv += ["-daemonize", "-pidfile", str(paths.pidfile), "-D", str(paths.log)]
    argv += ["-chardev", f"socket,id=qmp,path={_esc(paths.qmp)},server=on,wait=off"]
    argv += ["-mon", "chardev=qmp,mode=control"]
    argv += ["-chardev", f"file,id=serial0,path={_esc(paths.console)},append=on"]
    argv += ["-serial", "chardev:serial0"]
    argv += ["-vnc", f"unix:{_esc(paths.vnc)},password=on"]
    argv += ["-device", "ide-cd,id=cd0,bus=ide.1,unit=0"]
    argv += _disks(spec) + _nics(spec) + _volumes(spec) + _boot(spec)
    if launch.incoming:
        argv += ["-incoming", "defer"]
    elif launch.hold:
        argv += ["-S"]
    return argv


def _esc(value: object) -> str:
    """A value inside a ``key=value,...`` option: QEMU reads ``,,`` as one comma."""
    return str(value).replace(",", ",,")


def _cpu(spec: VmSpec) -> list[str]:
    model = spec.hints.get("cpumodel", "").strip()
    if not model:
        return []
    if not _CPU.fullmatch(model):
        raise InvalidInput(f"hint cpumodel={model!r} is not a CPU model")
    return ["-cpu", model]


def volume_names(volume: int) -> tuple[str, str]:
    """The block node and the device of volume ``volume``."""
    return f"vol{volume}", f"volume{volume}"


def volume_slot(volume: int) -> str:
    return f"{VOLUME_SLOT_BASE + volume:#04x}"


def auto_slots(spec: VmSpec) -> int:
    """How many PCI slots QEMU chooses for the VM's devices other than volumes."""
    virtio = sum(d.volume is None and d.interface == "virtio" for d in spec.disks)
    return virtio + len(spec.nics)


def next_auto_slot(spec: VmSpec) -> str:
    """The PCI slot QEMU gives one more NIC after the VM's own disks and NICs (``nics.py``
    hot-plugs it there); ``InvalidInput`` when a volume holds it."""
    slot = FIRST_AUTO_SLOT + auto_slots(spec)
    taken = [VOLUME_SLOT_BASE + d.volume for d in spec.disks if d.volume is not None]
    if slot >= min(taken, default=VOLUME_SLOT_BASE + 26):  # 31 is the bus's last slot
        raise InvalidInput(
            f"instance {spec.instance_id} has no PCI slot left for another NIC below its volumes"
        )
    return f"{slot:#04x}"


def check_volume_slot(spec: VmSpec, volume: int) -> None:
    """``InvalidInput`` unless volume ``volume`` fits above the slots QEMU chooses."""
    if not 1 <= volume <= 25:
        raise InvalidInput(f"instance {spec.instance_id}: volume {volume} is not 1 to 25")
    last_auto = FIRST_AUTO_SLOT + auto_slots(spec) - 1
    if VOLUME_SLOT_BASE + volume <= last_auto:
        raise InvalidInput(
            f"instance {spec.instance_id} has {auto_slots(spec)} disks and NICs of its own:"
            f" a volume fits only at /dev/sd{chr(ord('a') + last_auto - VOLUME_SLOT_BASE + 1)}"
            " or a later letter"
        )


def _volumes(spec: VmSpec) -> list[str]:
    argv: list[str] = []
    for disk in spec.disks:
        if disk.volume is None:
            continue
        node, device = volume_names(disk.volume)
        argv += [
            "-blockdev",
            f"driver={disk.format},node-name={node},file.driver=file,file.filename={_esc(disk.path)}",
        ]
        argv += [
            "-device",
            f"virtio-blk-pci,drive={node},id={device},addr={volume_slot(disk.volume)}",
        ]
    return argv


def _disks(spec: VmSpec) -> list[str]:
    argv: list[str] = []
    ide = 0
    plain = [disk for disk in spec.disks if disk.volume is None]
    for index, disk in enumerate(plain):
        drive = f"if=none,id=disk{index},file={_esc(disk.path)},format={disk.format}"
        argv += ["-drive", drive + (",readonly=on" if disk.read_only else "")]
        boot = ",bootindex=0" if index == 0 and spec.boot.kernel is None else ""
        if disk.interface == "virtio":
            argv += ["-device", f"virtio-blk-pci,drive=disk{index},id=vd{index}{boot}"]
        else:
            argv += ["-device", f"ide-hd,drive=disk{index},bus=ide.0,unit={ide},id=hd{ide}{boot}"]
            ide += 1
    return argv


def _nics(spec: VmSpec) -> list[str]:
    argv: list[str] = []
    for index, nic in enumerate(spec.nics):
        script = "no" if nic.ifup_script is None else _esc(nic.ifup_script)
        netdev = f"tap,id=net{index},ifname={nic.tap},script={script},downscript=no"
        model = NIC_MODELS.get(nic.model, nic.model)
        argv += ["-netdev", netdev]
        argv += ["-device", f"{model},netdev=net{index},mac={nic.mac.lower()},id=nic{index}"]
    return argv


def _boot(spec: VmSpec) -> list[str]:
    boot = spec.boot
    if boot.kernel is None:
        return []
    return DirectBoot(boot.kernel, boot.initrd, boot.cmdline).qemu_args()


def _check(spec: VmSpec, paths: VmPaths) -> None:
    """Everything that could not be escaped, and the limits QEMU would fail on later."""
    where = f"instance {spec.instance_id}"
    if not 1 <= spec.cores <= 255:
        raise InvalidInput(f"{where}: {spec.cores} cores (QEMU takes 1 to 255)")
    if spec.memory < 16:
        raise InvalidInput(f"{where}: {spec.memory} MB of memory is too little")
    for socket in (paths.qmp, paths.vnc):
        if not socket.is_absolute() or len(str(socket).encode()) > SOCKET_PATH_MAX:
            raise InvalidInput(
                f"{where}: the state directory {paths.state_dir} must be absolute and short"
                f" enough for a Unix socket path ({SOCKET_PATH_MAX} bytes)"
            )
    for disk in spec.disks:
        if disk.format not in _DISK_FORMATS or disk.interface not in ("virtio", "ide"):
            raise InvalidInput(f"{where}: disk {disk.path}: {disk.format}/{disk.interface}?")
    if sum(disk.interface == "ide" for disk in spec.disks) > _IDE_DISKS:
        raise InvalidInput(f"{where}: at most {_IDE_DISKS} IDE disks")
    volumes = [disk.volume for disk in spec.disks if disk.volume is not None]
    if len(set(volumes)) < len(volumes):
        raise InvalidInput(f"{where}: two disks are the same volume")
    for disk in spec.disks:
        if disk.volume is not None:
            if disk.interface != "virtio" or disk.read_only:
                raise InvalidInput(f"{where}: volume {disk.volume} must be a writable virtio disk")
            check_volume_slot(spec, disk.volume)
    for nic in spec.nics:
        check_nic(nic, where)


def check_nic(nic: NicSpec, where: str) -> None:
    """``InvalidInput`` unless the NIC's tap name, MAC and model are what they may be."""
    if not _TAP.fullmatch(nic.tap):
        raise InvalidInput(f"{where}: {nic.tap!r} is not a tap name")
    if not _MAC.fullmatch(nic.mac):
        raise InvalidInput(f"{where}: {nic.mac!r} is not a MAC address")
    if not _MODEL.fullmatch(nic.model):
        raise InvalidInput(f"{where}: {nic.model!r} is not a NIC model")
