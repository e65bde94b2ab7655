"""``QemuDriver``: the ``VmmDriver`` contract (``vmm/base.py``) on real qemu processes.

Each VM is a daemonized qemu (``cmdline``) watched by pidfd (``process``) and driven through
QMP (``monitor``); its record, state and end are ``vm.QemuVm``; suspend, restore and migration
are ``transfer``; ``vmmSpecificCall`` is ``calls``; CPU weights ``cgroups``; the accelerator
``probe``. This module ties them together, one method per contract operation.

Restart safety. Before qemu is launched a provisional state file names the VM's pid file; once
it runs, the state file holds pid, process start time and boot id. A node manager that died at
any moment finds the VM again through ``adopt`` (the pid must still be that qemu: same start
time, our socket on its command line) or cleans up after it. One watcher task per VM awaits the
pidfd and ends the VM exactly once, emitting the one ``exited`` event.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import socket
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tashi.config.nodemanager import QemuSettings
from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    InvalidInput,
    InvalidState,
    NotFound,
    Unavailable,
)
from tashi.domain.ids import InstanceId
from tashi.vmm import statefile
from tashi.vmm.base import (
    Capability,
    DiskSpec,
    ExitReason,
    MigrationStats,
    MigrationTicket,
    NicSpec,
    VmEvent,
    VmmCall,
    VmSpec,
    VmState,
    VmStatus,
    check_cpu_share,
    check_movable,
)
from tashi.vmm.qemu import bootslots, calls, cgroups, hotplug, nics, probe, process, transfer
from tashi.vmm.qemu.cmdline import Launch, VmPaths, build_argv
from tashi.vmm.qemu.vm import Outgoing, QemuVm, state_of

log = logging.getLogger(__name__)

QUIT_WAIT = 3.0  # seconds for qemu to leave after QMP quit, then after SIGTERM, then SIGKILL


class QemuDriver:
    name = "qemu"

    def __init__(
        self, settings: QemuSettings, *, images_dir: Path | None = None, netns: str | None = None
    ) -> None:
        if settings.accel not in ("auto", "kvm", "tcg"):
            raise InvalidInput(f"[Qemu] accel = {settings.accel!r}: choose auto, kvm or tcg")
        if settings.suspend_compression not in ("gzip", "none"):
            raise InvalidInput("[Qemu] suspendCompression: choose gzip or none")
        self.settings, self._images_dir, self._netns = settings, images_dir, netns
        problem = cgroups.check(settings.cgroup_root) if settings.use_cgroups else "useCgroups off"
        if problem is not None:
            log.warning("no CPU shares for VMs: %s", problem)
        self._cgroups = problem is None
        self.capabilities = frozenset(
            c for c in Capability if self._cgroups or c.value != "cpu_share"
        )
        self._vms: dict[InstanceId, QemuVm] = {}
        self._events: asyncio.Queue[VmEvent] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accel: str | None = None
        self._opening = asyncio.Lock()
        self._migrations = asyncio.Semaphore(settings.max_parallel_migrations)
        slots = bootslots.parse_count(settings.boot_slots)
        self._slots = bootslots.BootSlots(settings.boot_slot_dir, slots) if slots else None
        self._boot_id = process.boot_id()
        self._host_name = socket.gethostname()

    @property
    def accel(self) -> str | None:
        """``kvm`` or ``tcg`` once opened."""
        return self._accel

    # --- the driver's own life ------------------------------------------------------

    async def open(self) -> None:
        async with self._opening:
            if self._accel is not None:
                return
            qemu = self.settings.qemu_bin
            if not os.access(qemu, os.X_OK):
                raise Unavailable(f"[Qemu] qemuBin = {qemu} is not an executable program")
            kernel = probe.find_kernel(self.settings.probe_kernel, self._images_dir)
            timeout = self.settings.kvm_probe_timeout
            self._accel = await probe.choose_accel(self.settings.accel, qemu, kernel, timeout)
            log.info(
                "QEMU driver ready: %s, cgroups %s", self._accel, "on" if self._cgroups else "off"
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for vm in self._vms.values():
            await vm.monitor.close()
            vm.detach()
        self._vms.clear()

    async def host_info(self) -> tuple[int, int]:
        total_kb = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total_kb = int(line.split()[1])
        return max(0, total_kb // 1024 - self.settings.reserved_mem), os.cpu_count() or 1

    # --- reading --------------------------------------------------------------------

    async def list(self) -> builtins.list[VmStatus]:
        return [vm.status() for vm in self._vms.values()]

    def events(self) -> AsyncIterator[VmEvent]:
        return self._iterate_events()

    async def _iterate_events(self) -> AsyncIterator[VmEvent]:
        while True:
            yield await self._events.get()

    def _get(self, instance_id: InstanceId) -> QemuVm:
        try:
            return self._vms[instance_id]
        except KeyError:
            raise NotFound(f"this host runs no VM for instance {instance_id}") from None

    # --- starting -------------------------------------------------------------------

    async def start(
        self, spec: VmSpec, *, incoming: MigrationTicket | Path | None = None
    ) -> VmStatus:
        await self.open()
        assert self._accel is not None
        if spec.instance_id in self._vms:
            raise AlreadyExists(f"instance {spec.instance_id} already runs on this host")
        check_cpu_share(spec.cpu_share)
        if isinstance(incoming, Path) and not incoming.is_file():
            raise NotFound(f"there is no suspend file {incoming}")
        slots = self._slots if incoming is None else None  # a boot, not a migration or resume
        slot = slots.try_take() if slots is not None else None
        launch = Launch(
            self.settings.qemu_bin,
            self._accel,
            self.settings.machine,
            incoming=incoming is not None,
            netns=self._netns,
            hold=slots is not None and slot is None,
        )
        try:
            vm = await self._launch(spec, launch, incoming)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        log.info(
            "instance %s: qemu pid %d started (%s%s)",
            spec.instance_id,
            vm.process.pid,
            vm.state.value,
            ", waiting for a boot slot" if vm.boot_queued else "",
        )
        if slots is not None:
            self._supervise(self._boot(vm, slot), f"qemu-boot-{spec.instance_id}")
        return vm.status()

    async def _launch(
        self,
        spec: VmSpec,
        launch: Launch,
        incoming: MigrationTicket | Path | None,
    ) -> QemuVm:
        """Launch qemu and attach the VM; on any failure nothing of it is left."""
        paths = VmPaths(spec.state_dir)
        argv = build_argv(spec, launch, paths)
        spec.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._refuse_leftover(spec, paths)
        statefile.write(paths.state, self._provisional(spec))
        try:
            proc = await process.launch(
                argv, paths.pidfile, paths.log, self.settings.launch_timeout
            )
        except BackendFailure:
            for path in paths.made():  # qemu leaves its socket when it fails after making it
                path.unlink(missing_ok=True)
            statefile.remove(paths.state)
            raise
        vm = self._attach(spec, paths, proc, launch.accel)
        vm.boot_queued = launch.hold
        vm.awaiting = incoming is not None
        try:
            if self._cgroups:  # no wait: a node manager that dies here finds the provisional
                # file, and its adopt makes the same group again (``create`` is idempotent)
                vm.cgroup = cgroups.create(
                    self.settings.cgroup_root, spec.instance_id, proc.pid, spec.cpu_share
                )
            vm.save(self._boot_id)  # before anything can wait
            await vm.monitor.connect()
            if isinstance(incoming, Path):
                await transfer.start_restore(vm, incoming)
            elif isinstance(incoming, MigrationTicket):
                await transfer.listen(vm, incoming)
        except BaseException:
            vm.silent = True  # the caller hears of it from this raise, not an event
            await self._kill(vm, ExitReason.failed)
            raise
        vm.state = VmState.running if incoming is None else VmState.incoming
        return vm

    async def _boot(self, vm: QemuVm, slot: bootslots.Slot | None) -> None:
        """Run a queued VM's CPUs once a boot slot is free; hold the slot while it boots."""
        assert self._slots is not None
        try:
            if slot is None:
                slot = await self._slots.take()
                async with vm.lock:
                    if not (vm.boot_queued and vm.process.alive()):
                        log.info("instance %s: left the boot queue (paused or ended)", vm.iid)
                        return
                    try:
                        await self._run_cpus(vm)
                    except BackendFailure as exc:
                        log.error("instance %s: cannot start its CPUs: %s", vm.iid, exc.message)
                        vm.boot_queued = False
                        await self._kill(vm, ExitReason.failed)
                        return
                log.info("instance %s: boot slot %d: its CPUs run", vm.iid, slot.index)
            pid = vm.process.pid
            why = await bootslots.until_booted(
                lambda: bootslots.cpu_demand_of(pid) if vm.process.alive() else None,
                self.settings.boot_hold,
            )
            log.debug("instance %s: boot slot %d freed: %s", vm.iid, slot.index, why)
        finally:
            if slot is not None:
                slot.release()

    async def _run_cpus(self, vm: QemuVm) -> None:
        """Continue a VM made with -S to wait for a boot slot (the caller holds its lock)."""
        await vm.monitor.execute("cont")
        self._dequeue(vm)

    def _dequeue(self, vm: QemuVm) -> None:
        vm.boot_queued = False
        vm.save(self._boot_id)

    def _provisional(self, spec: VmSpec) -> dict[str, Any]:
        return {"spec": statefile.spec_to_json(spec), "pid": None, "boot_id": self._boot_id}

    def _refuse_leftover(self, spec: VmSpec, paths: VmPaths) -> None:
        """A state dir may hold the leftovers of a VM that died; never those of a live one."""
        doc = statefile.read(paths.state)
        if doc is not None:
            found = self._find_process(doc, paths)
            if found is not None:
                found.close()
                raise AlreadyExists(f"instance {spec.instance_id}: a qemu runs there; adopt it")
        for path in paths.made():
            path.unlink(missing_ok=True)

    def _attach(self, spec: VmSpec, paths: VmPaths, proc: process.Process, accel: str) -> QemuVm:
        vm = QemuVm(
            spec,
            paths,
            proc,
            accel=accel,
            monitor_timeout=self.settings.monitor_timeout,
            emit=self._events.put_nowait,
        )
        self._vms[spec.instance_id] = vm
        self._supervise(self._watch(vm), f"qemu-watch-{spec.instance_id}")
        return vm

    def _supervise(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._watched)

    async def _watch(self, vm: QemuVm) -> None:
        await vm.process.exited()
        if self._vms.get(vm.spec.instance_id) is vm:
            del self._vms[vm.spec.instance_id]
        reason, detail = vm.reason()
        await vm.end()
        if not vm.silent:
            self._events.put_nowait(VmEvent(vm.spec.instance_id, VmState.exited, detail, reason))
        log.info("instance %s: qemu pid %d ended: %s", vm.iid, vm.process.pid, detail)

    def _watched(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # supervision boundary
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    # --- adoption -------------------------------------------------------------------

    async def adopt(self, state_dirs: Sequence[Path]) -> builtins.list[VmStatus]:
        found: builtins.list[VmStatus] = []
        for state_dir in state_dirs:
            status = await self._adopt_one(VmPaths(state_dir))
            if status is not None:
                found.append(status)
        return found

    async def _adopt_one(self, paths: VmPaths) -> VmStatus | None:
        doc = statefile.read(paths.state)
        if doc is None:
            return None
        try:
            spec = statefile.spec_from_json(doc["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            log.error("%s: unreadable state file (%r); not adopted", paths.state, exc)
            return None
        if spec.instance_id in self._vms:
            return self._vms[spec.instance_id].status()
        proc = self._find_process(doc, paths)
        if proc is None:
            await self._bury(spec, paths, doc)
            out = Outgoing.from_json(doc.get("outgoing"))
            if out is not None and out.target is not None and out.target.is_file():
                # it ended after its suspend file was whole (renamed only then): suspended
                return VmStatus(spec.instance_id, 0, VmState.exited, spec, out.sending())
            return None
        vm = self._attach(spec, paths, proc, str(doc.get("accel") or self._accel or "tcg"))
        vm.cgroup = Path(doc["cgroup"]) if doc.get("cgroup") else None
        if vm.cgroup is None and self._cgroups:  # the node manager died before making it
            try:
                vm.cgroup = cgroups.create(
                    self.settings.cgroup_root, spec.instance_id, proc.pid, spec.cpu_share
                )
            except BackendFailure as exc:
                log.error("instance %s: %s", vm.iid, exc.message)
        try:
            run_state = str((await vm.monitor.execute("query-status"))["status"])
        except BackendFailure as exc:
            log.error(
                "instance %s: adopted pid %d, but QMP does not answer: %s", vm.iid, proc.pid, exc
            )
            run_state = "running"
        # made with -S to wait for a boot slot, and still waiting: it waits again, here
        vm.boot_queued = bool(doc.get("boot_queued")) and run_state == "prelaunch"
        vm.state = VmState.running if vm.boot_queued else state_of(run_state)
        vm.outgoing = Outgoing.from_json(doc.get("outgoing"))
        if vm.outgoing is not None:  # sending itself: finish_outgoing sees it to its end
            vm.state = VmState.migrating
        # received (or receiving) a migration or a restore that nobody ran yet: still incoming,
        # for finish_incoming, whether QEMU has loaded the state (paused) or not (inmigrate)
        vm.awaiting = bool(doc.get("incoming")) and run_state in ("inmigrate", "paused")
        if vm.awaiting:
            vm.state = VmState.incoming
        vm.save(self._boot_id)
        log.info("instance %s: adopted qemu pid %d (%s)", vm.iid, proc.pid, vm.state.value)
        if vm.boot_queued:
            await self._queue_adopted(vm)
        return vm.status()

    async def _queue_adopted(self, vm: QemuVm) -> None:
        if self._slots is not None:
            self._supervise(self._boot(vm, None), f"qemu-boot-{vm.iid}")
            return
        async with vm.lock:  # boot slots are off now: no reason to wait
            await self._run_cpus(vm)

    def _find_process(self, doc: dict[str, Any], paths: VmPaths) -> process.Process | None:
        if doc.get("boot_id") != self._boot_id:
            return None  # the host rebooted: whatever has that pid now is not our qemu
        if doc.get("pid") is None:  # the node manager died while qemu was starting
            return process.from_pidfile(paths.pidfile)
        start_time = int(doc["start_time"])
        return process.Process.attach(
            int(doc["pid"]), start_time=start_time, arg=str(paths.pidfile)
        )

    async def _bury(self, spec: VmSpec, paths: VmPaths, doc: dict[str, Any]) -> None:
        """Clean up after a VM that died while no driver watched it, and say so."""
        if doc.get("cgroup"):
            try:
                await cgroups.remove(Path(doc["cgroup"]))
            except BackendFailure as exc:
                log.error("instance %s: %s", spec.instance_id, exc.message)
        for path in paths.made():
            path.unlink(missing_ok=True)
        detail = "qemu ended while no node manager watched it"
        self._events.put_nowait(
            VmEvent(spec.instance_id, VmState.exited, detail, ExitReason.failed)
        )
        log.warning("instance %s: %s", spec.instance_id, detail)

    # --- lifecycle commands ---------------------------------------------------------

    async def shutdown(self, instance_id: InstanceId) -> None:
        vm = self._get(instance_id)
        async with vm.lock:
            vm.expect(VmState.running, VmState.shutting_down, what="shut down")
            if vm.boot_queued:  # its guest never ran: nothing to power off but qemu itself
                vm.boot_queued = False
                vm.state = VmState.shutting_down
                await self._kill(vm, ExitReason.poweroff)
                return
            await vm.monitor.execute("system_powerdown")
            vm.state = VmState.shutting_down

    async def destroy(self, instance_id: InstanceId) -> None:
        vm = self._vms.get(instance_id)
        if vm is not None:
            await self._kill(vm, ExitReason.destroyed)

    async def _kill(self, vm: QemuVm, reason: ExitReason) -> None:
        """End the VM: QMP quit, then SIGTERM, then SIGKILL; return once it is cleaned up."""
        if vm.exit_reason is None:
            vm.exit_reason = reason
        if vm.process.alive():
            try:
                await vm.monitor.execute("quit", timeout=QUIT_WAIT)
            except BackendFailure as exc:
                log.debug("instance %s: quit: %s", vm.iid, exc.message)
            if not await vm.process.wait(QUIT_WAIT) and not await process.stop(
                vm.process, QUIT_WAIT
            ):
                raise BackendFailure(f"instance {vm.iid}: qemu pid {vm.process.pid} does not die")
        await asyncio.shield(vm.done)

    async def pause(self, instance_id: InstanceId) -> None:
        await self._run_state(instance_id, running=False)

    async def unpause(self, instance_id: InstanceId) -> None:
        await self._run_state(instance_id, running=True)

    async def _run_state(self, instance_id: InstanceId, *, running: bool) -> None:
        vm = self._get(instance_id)
        wanted, command = (VmState.running, "cont") if running else (VmState.paused, "stop")
        async with vm.lock:
            if vm.state is not wanted:
                other = VmState.paused if running else VmState.running
                vm.expect(other, what="unpause" if running else "pause")
                await vm.monitor.execute(command)
                vm.state = wanted
                if vm.boot_queued:  # paused before its turn: unpausing runs it at once
                    self._dequeue(vm)

    async def set_cpu_share(self, instance_id: InstanceId, share: int) -> None:
        vm = self._get(instance_id)
        check_cpu_share(share)
        if vm.cgroup is None:
            raise Unavailable(f"instance {instance_id} has no cgroup: CPU shares are off here")
        cgroups.set_share(vm.cgroup, share)
        vm.spec = replace(vm.spec, cpu_share=share)
        vm.save(self._boot_id)

    async def call(self, instance_id: InstanceId, request: VmmCall) -> str:
        return await calls.call(
            self._get(instance_id),
            request,
            vnc_host=self.settings.vnc_host,
            vnc_lifetime=self.settings.vnc_password_lifetime,
            host_name=self._host_name,
        )

    # --- volumes (hotplug.py) -------------------------------------------------------

    async def attach_disk(self, instance_id: InstanceId, disk: DiskSpec) -> None:
        vm = self._get(instance_id)
        async with vm.lock:
            vm.expect(VmState.running, VmState.paused, what="attach a disk to")
            await hotplug.attach(vm, disk)
            vm.spec = replace(vm.spec, disks=(*vm.spec.disks, disk))
            vm.save(self._boot_id)

    async def detach_disk(self, instance_id: InstanceId, volume: int, timeout: float) -> None:
        vm = self._get(instance_id)
        async with vm.lock:
            vm.expect(VmState.running, VmState.paused, what="detach a disk from")
            if await hotplug.detach(vm, volume, timeout):
                kept = tuple(d for d in vm.spec.disks if d.volume != volume)
                vm.spec = replace(vm.spec, disks=kept)
                vm.save(self._boot_id)

    # --- NICs (nics.py) -------------------------------------------------------------

    async def attach_nic(self, instance_id: InstanceId, nic: NicSpec) -> None:
        vm = self._get(instance_id)
        async with vm.lock:
            vm.expect(VmState.running, VmState.paused, what="attach a NIC to")
            await nics.attach(vm, nic)
            vm.spec = replace(vm.spec, nics=(*vm.spec.nics, nic))
            vm.save(self._boot_id)

    async def detach_nic(self, instance_id: InstanceId, mac: str, timeout: float) -> None:
        vm = self._get(instance_id)
        async with vm.lock:
            vm.expect(VmState.running, VmState.paused, what="detach a NIC from")
            if await nics.detach(vm, mac, timeout):
                vm.spec = replace(vm.spec, nics=tuple(vm.spec.nics)[:-1])
                vm.save(self._boot_id)

    async def backup_disk(
        self, instance_id: InstanceId, source: Path, target: Path, timeout: float
    ) -> None:
        vm = self._get(instance_id)
        async with vm.lock:
            vm.expect(VmState.running, VmState.paused, what="copy a disk of")
            await hotplug.backup(vm, source, target, timeout)

    # --- moving the VM --------------------------------------------------------------

    async def suspend(self, instance_id: InstanceId, target: Path) -> None:
        vm = self._get(instance_id)
        check_movable(vm.spec, "suspend")
        async with self._migrations, vm.lock:
            vm.expect(VmState.running, VmState.paused, what="suspend")
            await transfer.save(
                vm,
                target,
                compress=self.settings.suspend_compression == "gzip",
                bandwidth_mb=self.settings.migrate_bandwidth,
                timeout=self.settings.migrate_timeout,
                persist=lambda: vm.save(self._boot_id),
            )
            vm.exit_reason = ExitReason.suspended
        await self._kill(vm, ExitReason.suspended)

    async def migrate(self, instance_id: InstanceId, ticket: MigrationTicket) -> MigrationStats:
        vm = self._get(instance_id)
        check_movable(vm.spec, "migrate")
        async with self._migrations, vm.lock:
            vm.expect(VmState.running, VmState.paused, what="migrate")
            stats = await transfer.send(
                vm,
                ticket,
                bandwidth_mb=self.settings.migrate_bandwidth,
                timeout=self.settings.migrate_timeout,
                persist=lambda: vm.save(self._boot_id),
            )
            vm.exit_reason = ExitReason.migrated
        await self._kill(vm, ExitReason.migrated)
        return stats

    async def finish_outgoing(self, instance_id: InstanceId) -> None:
        vm = self._get(instance_id)
        if vm.outgoing is None:
            raise InvalidState(f"instance {instance_id} is not sending itself anywhere")
        reason = ExitReason.suspended if vm.outgoing.kind == "suspend" else ExitReason.migrated
        async with self._migrations, vm.lock:
            await transfer.conclude(
                vm,
                bandwidth_mb=self.settings.migrate_bandwidth,
                timeout=self.settings.migrate_timeout,
                persist=lambda: vm.save(self._boot_id),
            )
            vm.exit_reason = reason
        await self._kill(vm, reason)

    async def finish_incoming(self, instance_id: InstanceId) -> VmStatus:
        vm = self._get(instance_id)
        async with vm.lock:
            vm.expect(VmState.incoming, what="finish the incoming migration of")
            try:
                await transfer.finish_incoming(vm, self.settings.migrate_timeout)
            except BackendFailure:
                await self._kill(vm, ExitReason.failed)
                raise
            vm.awaiting = False
            vm.save(self._boot_id)
        return vm.status()
