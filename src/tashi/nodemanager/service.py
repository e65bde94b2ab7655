"""``NodeService``: what a node manager does for its cluster manager, one method per request.

It turns an instance into a running VM: disks prepared (overlays, locks, direct boot), NICs
attached by the network driver, then the VMM driver starts the process; and it undoes all of it
when the VM ends, however it ends. Volumes join and leave a running VM (``attach_disk``,
``detach_disk``: the disk's lock and the VM's recorded instance go with them, so a restarted
node manager finds them), so do NICs (``attach_nic``, ``detach_nic``: ``nics.py``), and a
disk of a running VM is copied into a snapshot's file as it is (``backup_disk``). Things that
finish later (a suspend, a restore, a VM that stops on its own) are reported as events through
the ``EventSink``. The guests' instance
metadata (``GuestMetadata``, ``nodemanager/metadata``) and their security groups
(``TapFirewall``, ``nodemanager/secgroups``) are told of each VM's taps before its guest runs and
when it has gone. The contracts of what it is built with are in ``collaborators.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    InvalidState,
    NotFound,
    TashiError,
    Unavailable,
)
from tashi.domain.firewall import Policy
from tashi.domain.ids import InstanceId
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.nodes import NodeEvent, Ticket, Transfer, VmStatus
from tashi.domain.volumes import device_index
from tashi.images.operations import place
from tashi.images.store import ImageStore
from tashi.images.volumes import VolumeFiles, disk_path
from tashi.network.base import NetworkDriver
from tashi.nodemanager import heap, nics
from tashi.nodemanager.collaborators import (
    DiskPreparer,
    EventSink,
    GuestMetadata,
    Prepared,
    TapFirewall,
)
from tashi.nodemanager.fencing import FenceMarks
from tashi.nodemanager.nics import attachments
from tashi.nodemanager.vmdirs import VmDirs
from tashi.runtime.tasks import Background
from tashi.vmm.base import (
    Capability,
    DiskSpec,
    MigrationTicket,
    NicSpec,
    Sending,
    VmmCall,
    VmmDriver,
    VmSpec,
    VmState,
)

log = logging.getLogger(__name__)


@dataclass
class _Vm:
    instance: Instance
    disks: Prepared
    vm_id: int = 0
    state: VmState = VmState.starting
    busy: str | None = None  # "suspending" / "migrating": its exit is not news


@dataclass
class NodeService:
    driver: VmmDriver
    network: NetworkDriver
    disks: DiskPreparer
    dirs: VmDirs
    suspend_dir: Path  # <vfs prefix>/suspend
    images_dir: Path
    events: EventSink
    now: Callable[[], datetime]
    advertise_host: str
    shutdown_grace: float = 120.0  # [Qemu] shutdownGrace: then a shut-down VM is destroyed
    arrival_wait: float = 30.0  # how long a migrated VM may take to arrive once it was sent
    #: VMs stopped because the lease ran out (ADR 0010): their end is reported as fenced,
    #: with the heartbeats, not as an exit.
    fenced: FenceMarks | None = None
    #: Gives the C heap's free pages back once a VM is cleaned up (``heap``: without it the
    #: node manager's RSS grew by 4 KB a VM for a thousand VMs, issue 26).
    release_memory: Callable[[], object] = heap.trim
    metadata: GuestMetadata | None = None
    #: Security groups on the VMs' taps (``nodemanager/secgroups``), told as the metadata is.
    firewall: TapFirewall | None = None
    _vms: dict[InstanceId, _Vm] = field(default_factory=dict)
    #: Starts in flight, each ended (whatever its outcome) when its future is done: a destroy
    #: of the instance waits for it, then destroys what it started (a group's teardown sends
    #: one while the member still starts; undone under it, the start left a VM running
    #: without its taps or its directory).
    _launching: dict[InstanceId, asyncio.Future[None]] = field(default_factory=dict)
    _tasks: Background = field(default_factory=lambda: Background("a background VM task"))

    # --- reading ----------------------------------------------------------------------

    def report(self) -> list[tuple[Instance, int, VmState]]:
        return [(vm.instance, vm.vm_id, vm.state) for vm in self._vms.values()]

    def _get(self, instance_id: InstanceId) -> _Vm:
        try:
            return self._vms[instance_id]
        except KeyError:
            raise NotFound(f"this host runs no VM for instance {instance_id}") from None

    def _out(self, iid: InstanceId) -> VmStatus:
        vm = self._get(iid)
        return VmStatus(instance_id=iid, vm_id=vm.vm_id, state=vm.state.value)

    def _need(self, capability: Capability, what: str) -> None:
        if capability not in self.driver.capabilities:
            raise Unavailable(f"the {self.driver.name} driver cannot {what}")

    need = _need  # for ``nics.py``
    running = _get

    # --- starting ---------------------------------------------------------------------

    async def _nics(self, iid: InstanceId, instance: Instance) -> list[NicSpec]:
        return [
            await self.network.attach(iid, index, nic.network, nic.mac)
            for index, nic in enumerate(instance.nics)
        ]

    async def _guest_side(self, instance: Instance, nics: list[NicSpec]) -> list[DiskSpec]:
        """Security groups guarded and metadata served on the taps the driver made (an ifup
        script's tap is QEMU's, made later), and the NoCloud disk to add, if any."""
        taps = attachments(instance.id, nics)
        if self.firewall is not None:
            await self.firewall.attach(instance, taps)
        if self.metadata is None:
            return []
        await self.metadata.attach(instance, taps)
        seed = await asyncio.to_thread(self.metadata.seed, instance, self.dirs.of(instance.id))
        return [seed] if seed is not None else []

    def _spec(
        self,
        iid: InstanceId,
        instance: Instance,
        prepared: Prepared,
        nics: list[NicSpec],
        extra: list[DiskSpec],
    ) -> VmSpec:
        return VmSpec(
            instance_id=iid,
            name=instance.name,
            cores=instance.cores,
            memory=instance.memory,
            disks=[*prepared.disks, *extra],
            nics=nics,
            state_dir=self.dirs.of(iid),
            boot=prepared.boot,
            cpu_share=instance.cpu_share,
            hints=instance.hints,
        )

    async def _launch(self, instance: Instance, incoming: MigrationTicket | Path | None) -> _Vm:
        iid = instance.id
        if iid in self._vms or iid in self._launching:
            raise AlreadyExists(f"instance {iid} already runs on this host")
        launched = asyncio.get_running_loop().create_future()
        self._launching[iid] = launched
        try:
            return await self._launch_now(instance, incoming)
        finally:
            del self._launching[iid]
            launched.set_result(None)

    async def _launch_now(self, instance: Instance, incoming: MigrationTicket | Path | None) -> _Vm:
        iid = instance.id
        self.dirs.create(instance)
        prepared: Prepared | None = None
        try:
            # The disks (qemu-img, files) and the taps (netlink) at once: each is a few
            # milliseconds of every VM's start, and neither needs the other. Whichever failed,
            # ``_cleanup`` undoes both (detaching taps that were never made is a no-op).
            disks, nics = await asyncio.gather(
                asyncio.to_thread(self._prepare, instance, isinstance(incoming, MigrationTicket)),
                self._nics(iid, instance),
                return_exceptions=True,
            )
            if isinstance(disks, BaseException):
                raise disks
            prepared = disks
            if isinstance(nics, BaseException):
                raise nics
            extra = await self._guest_side(instance, nics)
            spec = self._spec(iid, instance, disks, nics, extra)
            status = await self.driver.start(spec, incoming=incoming)
        except TashiError:
            await self._cleanup(iid, prepared)
            raise
        vm = _Vm(instance=instance, disks=prepared, vm_id=status.vm_id, state=status.state)
        self._vms[iid] = vm
        return vm

    def _prepare(self, instance: Instance, migrating: bool) -> Prepared:
        if migrating:  # its source holds the persistent disks until it has sent itself
            return self.disks.prepare(instance.id, instance.disks, incoming=True)
        return self.disks.prepare(instance.id, instance.disks)

    async def start(self, instance: Instance, resume_from: str | None = None) -> VmStatus:
        """Start a VM; with ``resume_from`` restore it from a suspend file in the background
        and report ``started`` (or ``failed``) when done."""
        if resume_from is None:
            vm = await self._launch(instance, None)
            return self._out(vm.instance.id)
        self._need(Capability.suspend, "restore suspended VMs")
        source = self._suspend_file(resume_from)
        if not source.is_file():
            raise NotFound(f"there is no suspend file {resume_from!r}")
        vm = await self._launch(instance, source)
        self.dirs.restoring(instance.id, source.name)  # a restart finishes it
        self._tasks.spawn(self._finish_resume(instance.id, source))
        return self._out(vm.instance.id)

    async def _finish_resume(self, iid: InstanceId, source: Path) -> None:
        try:
            status = await self.driver.finish_incoming(iid)
        except TashiError as exc:
            self._event(iid, "failed", f"restore failed: {exc.message}")
            await self._destroy_quietly(iid)
            return
        vm = self._get(iid)
        vm.vm_id, vm.state = status.vm_id, status.state
        source.unlink(missing_ok=True)
        self.dirs.restoring(iid, ".")
        self._event(iid, "started", "restored from its suspend file")

    def _suspend_file(self, name: str) -> Path:
        path = (self.suspend_dir / name).resolve()
        if path.parent != self.suspend_dir.resolve():
            raise NotFound(f"{name!r} is not a file in the suspend area")
        return path

    # --- lifecycle --------------------------------------------------------------------

    async def destroy(self, iid: InstanceId) -> None:
        """Kill the VM and clean up; succeeds if it is already gone. A start of it in flight
        is waited for first."""
        launching = self._launching.get(iid)
        if launching is not None:
            await asyncio.shield(launching)
        vm = self._vms.get(iid)
        if vm is not None:
            vm.busy = "destroying"  # its exit is the answer to this request, not news
            await self.driver.destroy(iid)
        await self._forget(iid)

    async def shutdown(self, iid: InstanceId) -> None:
        """ACPI power-off; a guest that has not powered off after ``shutdown_grace`` seconds
        is destroyed (its exit is then reported like any other)."""
        vm = self._get(iid)
        await self.driver.shutdown(iid)
        vm.state = VmState.shutting_down
        self._tasks.spawn(self._escalate(iid, vm))

    async def _escalate(self, iid: InstanceId, vm: _Vm) -> None:
        await asyncio.sleep(self.shutdown_grace)  # a deadline, not a wait for a condition
        if self._vms.get(iid) is vm and vm.state is VmState.shutting_down and not vm.busy:
            log.warning(
                "instance %s ignored the power button for %.0f s; destroying it",
                iid,
                self.shutdown_grace,
            )
            await self.driver.destroy(iid)

    async def pause(self, iid: InstanceId) -> None:
        self._need(Capability.pause, "pause VMs")
        self._get(iid)
        await self.driver.pause(iid)
        self._get(iid).state = VmState.paused

    async def unpause(self, iid: InstanceId) -> None:
        self._need(Capability.pause, "pause VMs")
        self._get(iid)
        await self.driver.unpause(iid)
        self._get(iid).state = VmState.running

    async def suspend(self, iid: InstanceId, target: str) -> None:
        """Start saving the VM to ``target``; ``suspended`` or ``suspendFailed`` follows."""
        self._need(Capability.suspend, "suspend VMs")
        vm = self._get(iid)
        if vm.busy:
            raise AlreadyExists(f"instance {iid} is already {vm.busy}")
        path = self._suspend_file(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        vm.busy = "suspending"
        self._tasks.spawn(self._suspend(iid, path))

    async def _suspend(self, iid: InstanceId, path: Path) -> None:
        try:
            await self.driver.suspend(iid, path)
        except TashiError as exc:
            self._get(iid).busy = None
            self._event(iid, "suspendFailed", exc.message)
            return
        self._event(iid, "suspended", path.name)  # kept on disk before the VM is forgotten
        await self._forget(iid)

    async def set_cpu_share(self, iid: InstanceId, share: int) -> None:
        self._need(Capability.cpu_share, "change CPU shares")
        self._get(iid)
        await self.driver.set_cpu_share(iid, share)

    async def call(self, iid: InstanceId, op: str, arg: str) -> str:
        """A ``vmmSpecificCall``. A CD image is named like a disk image, by its name in the
        image store; only the node manager turns it into a path (and refuses paths)."""
        self._get(iid)
        request = VmmCall.parse(f"{op}:{arg}")
        if request.op == "changeCdrom" and request.arg:
            store = ImageStore(self.images_dir.parent)
            request = VmmCall(request.op, str(store.path_of(request.arg.strip())))
        return await self.driver.call(iid, request)

    # --- migration --------------------------------------------------------------------

    async def prepare_incoming(self, instance: Instance, port: int) -> Ticket:
        self._need(Capability.live_migration, "migrate VMs")
        ticket = MigrationTicket(host=self.advertise_host, port=port)
        await self._launch(instance, ticket)
        return Ticket(host=ticket.host, port=ticket.port)

    async def migrate(self, iid: InstanceId, ticket: Ticket) -> Transfer:
        self._need(Capability.live_migration, "migrate VMs")
        vm = self._get(iid)
        vm.busy = "migrating"
        try:
            stats = await self.driver.migrate(iid, MigrationTicket(ticket.host, ticket.port))
        except TashiError:
            vm.busy = None
            raise
        await self._forget(iid)
        return Transfer(
            total_seconds=stats.total_seconds,
            downtime_ms=stats.downtime_ms,
            transferred_bytes=stats.transferred_bytes,
        )

    async def finish_incoming(self, iid: InstanceId) -> VmStatus:
        """Run a migrated VM. Asked once its source has sent it all, so the VM is here within
        moments; one that has not arrived after ``arrival_wait`` seconds never will (its
        source died before it sent it, say): it is destroyed and this raises."""
        try:
            async with asyncio.timeout(self.arrival_wait):
                status = await self.driver.finish_incoming(iid)
        except TimeoutError:
            await self._destroy_quietly(iid)
            raise BackendFailure(
                f"instance {iid}: its VM did not arrive within {self.arrival_wait:.0f} s"
                " of its source's end"
            ) from None
        vm = self._get(iid)
        vm.vm_id, vm.state = status.vm_id, status.state
        await asyncio.to_thread(vm.disks.settle)  # its source has let the persistent disks go
        return self._out(iid)

    # --- volumes ----------------------------------------------------------------------

    async def attach_disk(self, iid: InstanceId, disk: DiskConfig) -> None:
        """Hot-plug a volume (``disk.device`` set) into the running VM, under its lock; the
        VM's recorded instance has it from then on."""
        self._need(Capability.disk_hotplug, "hot-plug disks")
        vm = self._get(iid)
        if vm.busy:
            raise InvalidState(f"instance {iid} is {vm.busy}")
        if any(d.uri == disk.uri for d in vm.instance.disks):
            return  # a retry of an attach that was done
        spec = await asyncio.to_thread(vm.disks.plug, disk)
        try:
            await self.driver.attach_disk(iid, spec)
        except BaseException:
            await asyncio.to_thread(vm.disks.unplug, spec.path)
            raise
        await self._record_disks(vm, (*vm.instance.disks, disk))

    async def detach_disk(self, iid: InstanceId, uri: str, timeout: float) -> None:
        """Hot-unplug the volume ``uri`` once the guest lets it go (``InvalidState`` after
        ``timeout`` seconds: it keeps it); its lock goes, and it leaves the recorded
        instance. A disk the VM does not have is no error."""
        self._need(Capability.disk_hotplug, "hot-unplug disks")
        vm = self._get(iid)
        if vm.busy:
            raise InvalidState(f"instance {iid} is {vm.busy}")
        disk = next((d for d in vm.instance.disks if d.uri == uri), None)
        spec = next((d for d in vm.disks.disks if disk and d.volume == _index(disk)), None)
        if disk is None or spec is None or spec.volume is None:
            return
        await self.driver.detach_disk(iid, spec.volume, timeout)
        await asyncio.to_thread(vm.disks.unplug, spec.path)
        await self._record_disks(vm, tuple(d for d in vm.instance.disks if d.uri != uri))

    async def attach_nic(self, iid: InstanceId, nic: NicConfig) -> Instance:
        """Hot-plug ``nic`` into the running VM as its last NIC (``nics.py``)."""
        return await nics.attach(self, iid, nic)

    async def detach_nic(self, iid: InstanceId, mac: str, timeout: float) -> Instance:
        """Hot-unplug the VM's last NIC ``mac`` once its guest lets go (``nics.py``)."""
        return await nics.detach(self, iid, mac, timeout)

    async def backup_disk(
        self, iid: InstanceId, uri: str, snapshot_id: str, timeout: float
    ) -> None:
        """Copy the running VM's persistent disk ``uri`` as it is into snapshot
        ``snapshot_id``'s file in the store, named once complete."""
        self._need(Capability.disk_hotplug, "copy disks of running VMs")
        vm = self._get(iid)
        if not any(d.uri == uri and d.persistent for d in vm.instance.disks):
            raise NotFound(f"instance {iid} has no persistent disk {uri}")
        source = disk_path(ImageStore(self.images_dir.parent), uri)
        files = VolumeFiles(self.images_dir.parent)
        final = files.snapshot(snapshot_id)
        target = files.snapshot_part(snapshot_id)
        try:
            await asyncio.to_thread(self.disks.blank_like, source, target)
            await self.driver.backup_disk(iid, source, target, timeout)
            await asyncio.to_thread(place, target, final)
        finally:
            await asyncio.to_thread(target.unlink, missing_ok=True)

    async def _record_disks(self, vm: _Vm, disks: tuple[DiskConfig, ...]) -> None:
        vm.instance = replace(vm.instance, disks=disks)
        await asyncio.to_thread(self.dirs.create, vm.instance)

    # --- endings ----------------------------------------------------------------------

    async def on_exit(self, iid: InstanceId, detail: str) -> None:
        """The driver saw the VM end. Report it unless an operation expected it."""
        vm = self._vms.get(iid)
        if vm is None or vm.busy:
            return
        if self.fenced is not None and iid in self.fenced:
            log.warning("instance %s: its VM was stopped by the watchdog (self-fence)", iid)
        else:
            self._event(iid, "exited", detail)
        await self._forget(iid)

    async def _forget(self, iid: InstanceId) -> None:
        vm = self._vms.pop(iid, None)
        await self._cleanup(iid, vm.disks if vm is not None else None)

    async def _cleanup(self, iid: InstanceId, prepared: Prepared | None) -> None:
        if self.firewall is not None:
            await self.firewall.detach(iid)
        if self.metadata is not None:
            await self.metadata.detach(iid)
        await self.network.detach(iid)
        if prepared is not None:
            await asyncio.to_thread(prepared.release)
        await asyncio.to_thread(self.dirs.remove, iid)
        await asyncio.to_thread(self.release_memory)

    async def _destroy_quietly(self, iid: InstanceId) -> None:
        try:
            await self.destroy(iid)
        except TashiError:
            log.exception("could not clean up instance %s", iid)

    def _event(self, iid: InstanceId, kind: str, detail: str = "") -> None:
        vm = self._vms.get(iid)
        self.events.put(
            NodeEvent(
                instance_id=iid,
                vm_id=vm.vm_id if vm else None,
                kind=kind,
                detail=detail,
                at=self.now(),
            )
        )

    # --- restart ----------------------------------------------------------------------

    async def recover(self) -> list[InstanceId]:
        """After a restart: re-attach to the VMs still running, clean up after the others."""
        found = self.dirs.existing()
        statuses = await self.driver.adopt(list(found.values()))
        alive = {s.instance_id: s for s in statuses if s.state is not VmState.exited}
        taps = await self.network.adopt(list(alive))
        suspended = {
            s.instance_id: s.sending.target
            for s in statuses
            if s.state is VmState.exited and s.sending is not None and s.sending.target
        }
        for iid in found:
            instance = self.dirs.instance(iid)
            if iid not in alive or instance is None:
                if iid in suspended:  # its suspend was done; the dead one did not say so
                    self._event(iid, "suspended", suspended[iid].name)
                await self._cleanup(iid, None)
                await asyncio.to_thread(self.disks.discard, iid)
                continue
            prepared = await asyncio.to_thread(self.disks.adopt, iid, instance.disks)
            status = alive[iid]
            vm = _Vm(instance, prepared, vm_id=status.vm_id, state=status.state)
            self._vms[iid] = vm
            if status.sending is not None:
                vm.busy = "suspending" if status.sending.kind == "suspend" else "migrating"
                self._tasks.spawn(self._finish_sending(iid, status.sending))
            restoring = self.dirs.restoring(iid)
            if status.state is VmState.incoming and restoring:  # a resume the dead one began
                self._tasks.spawn(self._finish_resume(iid, self._suspend_file(restoring)))
        adopted = [
            (vm.instance, [t for t in taps if t.instance_id == iid])
            for iid, vm in sorted(self._vms.items())
        ]
        if self.firewall is not None:
            await self.firewall.restore(adopted)
        if self.metadata is not None:
            await self.metadata.restore(adopted)
        return sorted(self._vms)

    async def set_firewall(self, policy: Policy) -> str:
        """The cluster manager's security-group policy for this host's VMs (idempotent); the
        version enforced."""
        if self.firewall is None:
            raise Unavailable("this node manager enforces no security groups")
        return await self.firewall.update(policy)

    def firewall_version(self) -> str:
        if self.firewall is None:
            raise Unavailable("this node manager enforces no security groups")
        return self.firewall.version

    async def _finish_sending(self, iid: InstanceId, sending: Sending) -> None:
        """A suspend or migration the node manager before this one started, which QEMU went
        on with: see it to its end (``VmmDriver.finish_outgoing``) and tell the cluster manager
        as that one would have. A migration's end is told by this host's VM list: the cluster
        manager asks both hosts (``Migrations.settle``)."""
        try:
            await self.driver.finish_outgoing(iid)
        except TashiError as exc:
            vm = self._vms.get(iid)
            if vm is not None:
                vm.busy = None
                statuses = {s.instance_id: s for s in await self.driver.list()}
                if iid in statuses:
                    vm.state = statuses[iid].state
            log.warning("instance %s: the %s did not finish: %s", iid, sending.kind, exc.message)
            if sending.kind == "suspend":
                self._event(iid, "suspendFailed", exc.message)
            return
        log.info("instance %s: the %s finished after the node manager's restart", iid, sending.kind)
        if sending.target is not None:
            self._event(iid, "suspended", sending.target.name)
        await self._forget(iid)

    async def close(self) -> None:
        await self._tasks.cancel()


def _index(disk: DiskConfig) -> int | None:
    return None if disk.device is None else device_index(disk.device)
