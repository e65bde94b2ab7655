"""The VMM driver contract: what a node manager asks of a hypervisor.

A driver runs the VMs of one host. The node manager prepares everything that is not the
hypervisor's business (disk overlays and locks, taps, the per-VM directory) and hands the driver
a complete ``VmSpec``; the driver starts, watches, changes and stops VM processes. It never talks
to the cluster manager and never touches the database. Drivers are found by name in
``registry.py``; ``fake.py`` keeps this whole contract without processes, ``qemu/`` is the real
one. ``tests/vmm/test_contract.py`` runs one suite over both.

Life of a driver. ``open()`` once at start-up (the QEMU driver probes KVM there, so the first
``start`` does not wait for it), then ``adopt()`` the VMs an earlier run left, then any
commands; ``close()`` at the end detaches and leaves every VM running. A driver that was never
opened opens itself on first use.

Identity. A VM is known by its ``instance_id`` (unique in the cluster, never reused). The
driver's own handle (``vm_id``: for QEMU the process id) is reported for display only.

Ownership of the per-VM directory. ``state_dir`` is chosen, created and finally removed by the
node manager; the driver keeps there everything it needs to find the VM again (its state file,
sockets, pid file) plus the serial console log. When a VM ends the driver removes what it made
(sockets, pid file, state file, the VM's cgroup) and keeps the logs for the node manager, who
removes the directory when it is done with the instance. Unix socket paths are limited to 107
bytes: keep ``state_dir`` short (``/var/lib/tashi-nm/vms/<id>``); a longer one is
``InvalidInput``.

Durability. After the node manager is killed and started again, ``adopt()`` re-attaches to every
VM still running, without stopping or restarting it: VM processes are not children that die with
the node manager.

Events. ``events()`` yields a ``VmEvent`` whenever a VM changes state on its own. ``exited`` is
emitted exactly once per VM that stops, for any reason, with an ``ExitReason``: also when a
command stopped it (``destroy``, ``suspend``, a completed ``migrate``), and then it is queued
before that command returns, so the node manager can tell expected exits from news. Besides, a
VM that pauses or resumes by itself (a disk error, a guest panic) gives a ``paused`` or
``running`` event. Commands report their own result by returning or raising and emit nothing
else. ``events()`` has one consumer: the node manager.

Errors. Methods raise ``tashi.domain.errors`` categories only: ``NotFound`` for an unknown
instance id, ``InvalidState`` when the VM is not in a state that allows the operation,
``InvalidInput`` for a bad ``VmmCall`` or spec, ``BackendFailure`` when the hypervisor failed
(with its message), ``Unavailable`` for a capability the driver lacks or a combination it cannot
do (suspending or migrating a VM that mixes node-local and shared disks).

Idempotency. ``destroy`` of a VM that is already gone (or was never here) succeeds. ``pause``
of a paused VM and ``unpause`` of a running one succeed. ``start`` of an instance id this driver
runs raises ``AlreadyExists``.

Capabilities. Optional features are declared in ``capabilities``; the node manager refuses an
operation whose capability is missing before calling the driver (a driver may still raise
``Unavailable``).

Volumes. A disk with ``DiskSpec.volume`` set is a volume (EC2's EBS, ``domain/volumes.py``): its
attachment point fixes where the hypervisor puts it, the same in a VM started with it, in one
it was hot-plugged into (``attach_disk``) and on a migration target, so that a VM can move with
it. ``detach_disk`` hot-unplugs it once the guest lets go; ``backup_disk`` copies a disk of a
running VM as it is at one instant (a snapshot that needs no pause).

NICs. ``attach_nic`` hot-plugs one more NIC into a running VM, after its last one and where a
VM started with that NIC has it (QEMU: the next PCI slot of its own devices), so that a VM with
a hot-plugged NIC migrates to a target started with all its NICs. ``detach_nic`` hot-unplugs the
last NIC once the guest lets it go. Only the last NIC comes and goes: the others keep their
places, so a VM's NICs are always its ``spec.nics`` in order.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from tashi.domain.errors import InvalidInput, Unavailable
from tashi.domain.ids import InstanceId


class Capability(enum.Enum):
    pause = "pause"
    suspend = "suspend"  # save to a file and stop; resume from the file
    live_migration = "live_migration"
    cpu_share = "cpu_share"  # relative CPU weight (cgroup cpu.shares)
    vnc = "vnc"
    cdrom = "cdrom"
    console = "console"  # the serial console log
    reset = "reset"
    disk_hotplug = "disk_hotplug"  # attach_disk, detach_disk, backup_disk on a running VM
    nic_hotplug = "nic_hotplug"  # attach_nic, detach_nic on a running VM


class VmState(enum.Enum):
    """What the driver observes of a VM process."""

    starting = "starting"
    running = "running"
    paused = "paused"
    incoming = "incoming"  # waiting for a migration or a resume stream
    migrating = "migrating"  # sending itself to another host (or to a suspend file)
    shutting_down = "shutting_down"
    exited = "exited"


class ExitReason(enum.Enum):
    """Why a VM stopped (the ``reason`` of an ``exited`` event)."""

    poweroff = "poweroff"  # the guest powered itself off (after shutdown, or on its own)
    destroyed = "destroyed"  # destroy()
    suspended = "suspended"  # suspend() saved it
    migrated = "migrated"  # migrate() handed it to another host
    failed = "failed"  # anything else: crashed, killed by someone, a failed restore,
    # or found dead by adopt()


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """One disk as the hypervisor opens it: ``path`` is a file the node manager prepared
    (an overlay for a non-persistent disk, the image itself for a persistent one).

    ``shared`` says the file is on storage every host sees at the same path (a persistent disk
    in the image store): suspend and migration leave it where it is. A disk that is not shared
    (an overlay in this node's scratch directory) travels inside the suspend file or the
    migration stream: only its own clusters, so the target must open a fresh overlay on the same
    backing image at its own path.

    ``read_only`` disks (the NoCloud seed of ``nodemanager/metadata/nocloud.py``) are opened
    read-only: the guest cannot write them, and QEMU's block migration leaves them out (the
    target opens its own copy).

    ``volume`` (1 to 25, the letter of ``/dev/sdb`` … ``/dev/sdz``) marks a volume: a shared
    virtio disk that can be hot-plugged and -unplugged, placed by that number (see the module
    docstring); no two disks of a VM share one."""

    path: Path
    format: str = "qcow2"
    interface: str = "virtio"  # virtio or ide
    shared: bool = False
    read_only: bool = False
    volume: int | None = None


@dataclass(frozen=True, slots=True)
class NicSpec:
    """One NIC: the tap the network driver made (or the ifup script QEMU should run)."""

    mac: str
    network: int
    tap: str
    ifup_script: Path | None = None  # the original qemu-ifup.<network> convention
    model: str = "virtio-net-pci"


@dataclass(frozen=True, slots=True)
class BootSpec:
    """Direct kernel boot (``None`` fields: boot from the first disk's bootloader)."""

    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None


@dataclass(frozen=True, slots=True)
class VmSpec:
    """Everything needed to start one VM.

    ``hints`` are the instance's hints; a driver reads the ones it knows (QEMU: ``cpumodel``)
    and ignores the rest."""

    instance_id: InstanceId
    name: str
    cores: int
    memory: int  # MB
    disks: Sequence[DiskSpec]
    nics: Sequence[NicSpec]
    state_dir: Path  # private to this VM: sockets, serial log, the driver's state file
    boot: BootSpec = BootSpec()
    cpu_share: int = 1024
    hints: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sending:
    """The transfer a VM was sending itself out with when its node manager died, as ``adopt``
    finds it: a suspend to the file ``target``, or a live migration (``target`` None)."""

    kind: Literal["suspend", "migrate"]
    target: Path | None = None


@dataclass(frozen=True, slots=True)
class VmStatus:
    instance_id: InstanceId
    vm_id: int
    state: VmState
    spec: VmSpec
    sending: Sending | None = None  # set by ``adopt`` on a VM in the middle of a transfer


@dataclass(frozen=True, slots=True)
class VmEvent:
    instance_id: InstanceId
    state: VmState
    detail: str = ""
    reason: ExitReason | None = None  # set when state is exited


@dataclass(frozen=True, slots=True)
class MigrationTicket:
    """Where a prepared target listens for the incoming VM: ``host`` must be an address of the
    target host that the source host can reach; the target listens on exactly that address and
    port, for one connection."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class MigrationStats:
    total_seconds: float
    downtime_ms: float | None
    transferred_bytes: int | None


VMM_OPS = ("startVnc", "stopVnc", "changeCdrom", "reset", "console", "nics", "list")


@dataclass(frozen=True, slots=True)
class VmmCall:
    """A typed ``vmmSpecificCall``: ``op`` is one of ``VMM_OPS``; ``arg`` its argument.

    ``startVnc`` opens VNC for one viewer and replies how to reach it, with a one-time
    password; ``stopVnc`` closes it. ``changeCdrom`` puts an image file (an absolute path the
    node manager resolved inside the image store; empty: eject) in the CD drive. ``reset``
    presses the reset button. ``console`` replies the last ``arg`` KB (default 16) of the serial
    console. ``nics`` replies a line per NIC: ``nic<i> mac=<mac> tap=<tap> guest=<g>``, ``g``
    ``ready`` once the guest's driver has taken the device (``waiting`` before, ``unknown``
    where the hypervisor cannot tell). ``list`` replies the operations."""

    op: str
    arg: str = ""

    @classmethod
    def parse(cls, text: str) -> VmmCall:
        """``"changeCdrom:/images/x.iso"`` → ``VmmCall("changeCdrom", "/images/x.iso")``.

        The op is matched without regard to case (the original lower-cased it); an unknown op is
        ``InvalidInput``."""
        op, _, arg = text.partition(":")
        for known in VMM_OPS:
            if known.lower() == op.strip().lower():
                return cls(known, arg)
        raise InvalidInput(f"unknown VMM operation {op!r}; known: {', '.join(VMM_OPS)}")

    def console_kilobytes(self) -> int:
        """The ``console`` argument: KB of the log to return (default 16, 1 to 1024)."""
        if not self.arg.strip():
            return 16
        try:
            value = int(self.arg)
        except ValueError:
            raise InvalidInput(f"console: {self.arg!r} is not a number of KB") from None
        if not 1 <= value <= 1024:
            raise InvalidInput("console: ask for 1 to 1024 KB")
        return value


class VmmDriver(Protocol):
    name: str
    capabilities: frozenset[Capability]

    async def open(self) -> None:
        """Get ready (probe the hypervisor, check cgroups). Raises ``Unavailable`` when the
        hypervisor cannot run here at all. Idempotent."""

    async def close(self) -> None:
        """Detach from every VM and stop watching them; the VMs keep running. The driver
        object is not used again (a new one ``adopt``s)."""

    async def host_info(self) -> tuple[int, int]:
        """``(memory MB, cores)`` this host offers to VMs (after any reserved memory)."""

    async def adopt(self, state_dirs: Sequence[Path]) -> list[VmStatus]:
        """Re-attach to the VMs whose state directories are given (after a node-manager
        restart) and return those still there. VMs found dead are cleaned up and reported in
        ``events()`` as exited (reason ``failed``); a directory without the driver's state file
        is skipped. A VM already attached is returned as it is. A VM the earlier node manager
        was suspending or migrating, whose hypervisor went on with the transfer without it, is
        returned ``migrating`` with ``sending`` set: ``finish_outgoing`` sees it to its end. One
        found dead after its suspend file was whole (the node manager died between the two) is
        returned ``exited`` with ``sending`` set, so that the suspend is reported."""

    async def start(
        self, spec: VmSpec, *, incoming: MigrationTicket | Path | None = None
    ) -> VmStatus:
        """Start a VM. With ``incoming`` a ticket, listen there for a live migration; with a
        path, restore a suspended VM from that file (``NotFound`` if there is none). Either way
        the VM is ``incoming`` until ``finish_incoming``. Returns once the process runs (not once
        the guest has booted)."""

    async def list(self) -> list[VmStatus]: ...

    async def shutdown(self, instance_id: InstanceId) -> None:
        """Ask the guest to power off (ACPI). Returns at once; ``exited`` (``poweroff``) follows
        when it does. The guest may ignore it: the node manager destroys the VM after a grace
        period (``[Qemu] shutdownGrace``)."""

    async def destroy(self, instance_id: InstanceId) -> None:
        """Stop the VM now (graceful quit, then SIGTERM, then SIGKILL) and wait until it is gone
        and cleaned up. Works whatever the VM is doing, also in the middle of another command."""

    async def pause(self, instance_id: InstanceId) -> None: ...

    async def unpause(self, instance_id: InstanceId) -> None: ...

    async def suspend(self, instance_id: InstanceId, target: Path) -> None:
        """Save the VM's state (and its non-shared disks), compressed, to ``target``, then stop
        it. Returns when the file is complete and the VM gone; ``target`` appears atomically. On
        failure the VM keeps running (resumed if it was running) and this raises."""

    async def migrate(self, instance_id: InstanceId, ticket: MigrationTicket) -> MigrationStats:
        """Source side: send the running VM to ``ticket``; on success the source VM stops
        (``exited``, reason ``migrated``). On failure or after ``[Qemu] migrateTimeout`` the VM
        keeps running here (resumed if it was stopped) and this raises ``BackendFailure``."""

    async def finish_outgoing(self, instance_id: InstanceId) -> None:
        """End the transfer of an adopted VM that was sending itself (``VmStatus.sending``) as
        ``suspend`` or ``migrate`` would have: once it has completed, the suspend file is whole
        at its target (a migration has nothing to keep), the VM stops (``exited``, reason
        ``suspended`` or ``migrated``) and this returns. When it failed, never started, or does
        not finish within ``[Qemu] migrateTimeout``, the VM runs on here (resumed if it ran),
        nothing is left at the target, and this raises ``BackendFailure``. ``InvalidState`` for
        a VM that is not sending."""

    async def finish_incoming(self, instance_id: InstanceId) -> VmStatus:
        """Target side: wait until an incoming migration or restore has completed and run the
        VM. On failure or timeout the target VM is destroyed and this raises
        ``BackendFailure``."""

    async def set_cpu_share(self, instance_id: InstanceId, share: int) -> None:
        """Change the VM's relative CPU weight (capability ``cpu_share``; SLA@SOI
        ``adaptCpuShare``; 2 to 262144, 1024 is the default)."""

    async def call(self, instance_id: InstanceId, request: VmmCall) -> str:
        """A hypervisor-specific operation (``VMM_OPS``); returns text for the user."""

    async def attach_disk(self, instance_id: InstanceId, disk: DiskSpec) -> None:
        """Hot-plug the volume ``disk`` (``volume`` set, ``shared``) into the running or paused
        VM (capability ``disk_hotplug``); the guest sees a new disk. From then on it is one of
        the VM's disks (``VmStatus.spec``, kept across ``adopt``), also for ``migrate`` and
        ``suspend``. ``InvalidInput`` for a disk that is not a volume, ``AlreadyExists`` for a
        volume number or file the VM has already, ``InvalidState`` for a VM in another state;
        on failure the VM is as it was."""

    async def detach_disk(self, instance_id: InstanceId, volume: int, timeout: float) -> None:
        """Hot-unplug volume ``volume`` and return once the guest has let it go and the
        hypervisor has closed its file. A guest that has not let go after ``timeout`` seconds
        keeps it: ``InvalidState``, and the VM and its disks are as they were. Idempotent: a
        volume the VM does not have is no error."""

    async def attach_nic(self, instance_id: InstanceId, nic: NicSpec) -> None:
        """Hot-plug ``nic`` (its tap made by the network driver, or an ifup script for QEMU to
        run) into the running or paused VM as its last NIC (capability ``nic_hotplug``); the
        guest sees a new network device with ``nic.mac``. From then on it is one of the VM's
        NICs (``VmStatus.spec``, kept across ``adopt``), also for ``migrate`` and ``suspend``.
        ``AlreadyExists`` for a MAC or tap the VM has already, ``InvalidInput`` when the VM has
        no room for another NIC (its volumes hold the slots above), ``InvalidState`` for a VM in
        another state; on failure the VM is as it was."""

    async def detach_nic(self, instance_id: InstanceId, mac: str, timeout: float) -> None:
        """Hot-unplug the VM's last NIC, ``mac``, and return once the guest has let it go and
        the hypervisor has closed its tap. ``InvalidInput`` for a NIC that is not the last; a
        guest that has not let go after ``timeout`` seconds keeps it: ``InvalidState``, the VM
        as it was. Idempotent: a MAC the VM does not have is no error."""

    async def backup_disk(
        self, instance_id: InstanceId, source: Path, target: Path, timeout: float
    ) -> None:
        """Copy the VM's disk ``source`` (a path of its spec's disks) as it is at one instant
        into ``target``, a new qcow2 file of the same virtual size made by the caller, while
        the guest runs on (crash-consistent, as a power cut would leave it). ``NotFound`` for
        a disk the VM does not have; ``BackendFailure`` if the copy fails or takes longer than
        ``timeout``: ``target`` is then incomplete, and the caller removes it."""

    def events(self) -> AsyncIterator[VmEvent]:
        """State changes the VMs make on their own, for the node manager to report."""


CPU_SHARE_MIN = 2  # the kernel's bounds for cgroup v1 cpu.shares
CPU_SHARE_MAX = 262144


def check_cpu_share(share: int) -> int:
    """``share`` if the kernel accepts it, else ``InvalidInput``."""
    if not CPU_SHARE_MIN <= share <= CPU_SHARE_MAX:
        raise InvalidInput(f"cpu share {share} is out of range {CPU_SHARE_MIN}-{CPU_SHARE_MAX}")
    return share


def check_movable(spec: VmSpec, what: str) -> None:
    """Refuse to suspend or migrate a VM whose disks mix node-local and shared files: QEMU's
    block migration copies every writable disk, and would copy a shared one onto itself. A
    read-only disk is not copied, so it counts for neither."""
    if len({disk.shared for disk in spec.disks if not disk.read_only}) > 1:
        raise Unavailable(
            f"cannot {what} instance {spec.instance_id}: it has both node-local and shared disks"
        )
