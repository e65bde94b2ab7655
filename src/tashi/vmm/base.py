"""The VMM driver contract: what a node manager asks of a hypervisor.

A driver runs the VMs of one host. The node manager prepares everything that is not the
hypervisor's business (disk overlays and locks, taps, cgroups, the per-VM directory) and hands
the driver a complete ``VmSpec``; the driver starts, watches, changes and stops VM processes.
It never talks to the cluster manager and never touches the database.

Identity. A VM is known by its ``instance_id`` (unique in the cluster, never reused). The
driver's own handle (``vm_id``: for QEMU the process id) is reported for display only.

Durability. Everything a driver needs to find its VMs again lives in the VM's ``state_dir``
(chosen by the node manager). After the node manager is killed and started again, ``adopt()``
re-attaches to every VM still running, without stopping or restarting it. VM processes must not
be children that die with the node manager.

Events. ``events()`` yields a ``VmEvent`` whenever a VM changes state on its own: it exited
(the guest powered off, crashed, or was killed), a migration in finished, and so on. Commands
below report their own result by returning or raising; they do not also emit an event, except
``Exited`` which is always emitted once per VM that stops for any reason.

Errors. Methods raise ``tashi.domain.errors`` categories only: ``NotFound`` for an unknown
instance id, ``InvalidState`` when the VM is not in a state that allows the operation,
``InvalidInput`` for a bad ``VmmCall``, ``BackendFailure`` when the hypervisor failed (with its
message), ``Unavailable`` for a capability the driver lacks.

Idempotency. ``destroy`` of a VM that is already gone succeeds. ``start`` of an instance id
that is running raises ``AlreadyExists``.

Capabilities. Optional features are declared in ``capabilities``; the node manager refuses an
operation whose capability is missing before calling the driver.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

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


class VmState(enum.Enum):
    """What the driver observes of a VM process."""

    starting = "starting"
    running = "running"
    paused = "paused"
    incoming = "incoming"  # waiting for a migration or a resume stream
    migrating = "migrating"  # sending itself to another host
    shutting_down = "shutting_down"
    exited = "exited"


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """One disk as the hypervisor opens it: ``path`` is a file the node manager prepared
    (an overlay for a non-persistent disk, the image itself for a persistent one)."""

    path: Path
    format: str = "qcow2"
    interface: str = "virtio"


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
    """Everything needed to start one VM."""

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
class VmStatus:
    instance_id: InstanceId
    vm_id: int
    state: VmState
    spec: VmSpec


@dataclass(frozen=True, slots=True)
class VmEvent:
    instance_id: InstanceId
    state: VmState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MigrationTicket:
    """Where a prepared target listens for the incoming VM (``tcp:host:port``)."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class MigrationStats:
    total_seconds: float
    downtime_ms: float | None
    transferred_bytes: int | None


@dataclass(frozen=True, slots=True)
class VmmCall:
    """A typed ``vmmSpecificCall``: ``op`` is one of ``VMM_OPS``; ``arg`` its argument."""

    op: str
    arg: str = ""


VMM_OPS = ("startVnc", "stopVnc", "changeCdrom", "reset", "console", "list")


class VmmDriver(Protocol):
    name: str
    capabilities: frozenset[Capability]

    async def host_info(self) -> tuple[int, int]:
        """``(memory MB, cores)`` this host offers to VMs (after any reserved memory)."""

    async def adopt(self, state_dirs: Sequence[Path]) -> list[VmStatus]:
        """Re-attach to the VMs whose state directories are given (after a node-manager
        restart). VMs found dead are cleaned up and reported in ``events()`` as exited."""

    async def start(self, spec: VmSpec, *, incoming: MigrationTicket | Path | None = None) -> VmStatus:
        """Start a VM. With ``incoming`` a ticket, wait for a live migration on that port;
        with a path, restore a suspended VM from that file. Returns once the process runs
        (not once the guest has booted)."""

    async def list(self) -> list[VmStatus]: ...

    async def shutdown(self, instance_id: InstanceId) -> None:
        """Ask the guest to power off (ACPI). Returns at once; ``Exited`` follows when it does."""

    async def destroy(self, instance_id: InstanceId) -> None:
        """Stop the VM now (graceful quit, then SIGTERM, then SIGKILL) and wait until it is gone."""

    async def pause(self, instance_id: InstanceId) -> None: ...

    async def unpause(self, instance_id: InstanceId) -> None: ...

    async def suspend(self, instance_id: InstanceId, target: Path) -> None:
        """Save the VM's state, compressed, to ``target``, then stop it. Returns when saved."""

    async def prepare_incoming(self, spec: VmSpec, port: int) -> MigrationTicket:
        """Target side of a live migration: start the VM waiting on ``port``."""

    async def migrate(self, instance_id: InstanceId, ticket: MigrationTicket) -> MigrationStats:
        """Source side: send the running VM to ``ticket``; on success the source VM stops.
        On failure the VM keeps running here (resumed if it was paused) and this raises."""

    async def finish_incoming(self, instance_id: InstanceId) -> VmStatus:
        """Target side: wait until an incoming migration or resume has completed and run it."""

    async def set_cpu_share(self, instance_id: InstanceId, share: int) -> None:
        """Change the VM's relative CPU weight (capability ``cpu_share``; SLA@SOI
        ``adaptCpuShare``)."""

    async def call(self, instance_id: InstanceId, request: VmmCall) -> str:
        """A hypervisor-specific operation (``VMM_OPS``); returns text for the user."""

    def events(self) -> AsyncIterator[VmEvent]:
        """State changes the VMs make on their own, for the node manager to report."""
