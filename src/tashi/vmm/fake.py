"""The fake VMM driver: the whole contract of ``base.py`` with no hypervisor behind it.

For unit tests of the node manager and for simulations of thousands of hosts in one process: a
VM is a record, its "guest" a console text and a clock; nothing runs per VM (no process, no
task, no thread), and a guest power-off is one ``call_later``. It keeps every rule of the
contract that a node manager can observe: states and the errors for wrong ones, ``exited``
events with their reasons, adoption from its own state files (``fake.json`` in the VM's
directory, like the QEMU driver's), capabilities, suspend to a (gzip JSON) file and resume from
it, and live migration between two fake drivers of one process through the ticket, which names
a "listening" target in a process-wide table, so a ticket nobody prepared is a refused
connection.

The console (``console.log`` in the VM's directory, as QEMU's) shows the tiny guest's markers
(``TASHI-GUEST-UP`` at a boot, ``POWEROFF`` at an ACPI power-off) with an ``uptime`` that
survives suspend and migration while the log starts afresh in the new VM's directory, so the
contract tests read both drivers the same way.

Volumes hot-plugged or -unplugged show on the console as the tiny guest's ``DISK`` markers,
and ``backup_disk`` copies the disk's file (when there is one: the fake's disks need not exist).

Test hooks, beyond the contract: ``crash()`` (the VM dies by itself), ``guest_pause()`` (it
stops on its own, e.g. a disk error), ``kill_offline()`` (the VM died while no node manager was
watching), ``killed_while_sending()`` (the node manager died in the middle of a suspend or a
migration), ``held_disks`` and ``held_nics`` (volumes and NICs the guest will not let go),
``failing`` (operations that fail with ``BackendFailure``).
"""

from __future__ import annotations

import asyncio
import builtins
import gzip
import itertools
import json
import secrets
import shutil
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    InvalidInput,
    InvalidState,
    NotFound,
    Unavailable,
)
from tashi.domain.ids import InstanceId
from tashi.images import markers
from tashi.vmm import statefile
from tashi.vmm.base import (
    VMM_OPS,
    Capability,
    DiskSpec,
    ExitReason,
    MigrationStats,
    MigrationTicket,
    NicSpec,
    Sending,
    VmEvent,
    VmmCall,
    VmSpec,
    VmState,
    VmStatus,
    check_cpu_share,
    check_movable,
)

STATE_FILE = "fake.json"
CONSOLE_LOG = "console.log"
_SUSPEND_MAGIC = "tashi-fake-suspend-1"

_vm_ids = itertools.count(10_000)  # "process ids", unique in this process like real ones
_listeners: dict[tuple[str, int], _FakeVm] = {}  # prepared migration targets, process-wide


@dataclass
class _FakeVm:
    spec: VmSpec
    vm_id: int
    state: VmState
    driver: FakeDriver
    uptime_base: float = 0.0  # guest seconds before this host's start (suspend, migration)
    started: float = 0.0  # loop time of the start here
    console: list[str] = field(default_factory=list)
    source: Path | MigrationTicket | None = None  # what an incoming VM waits for
    received: asyncio.Event = field(default_factory=asyncio.Event)
    cdrom: str = ""
    sending: Sending | None = None  # adopted in the middle of a transfer


class FakeDriver:
    name = "fake"

    def __init__(
        self,
        *,
        memory: int = 16384,
        cores: int = 8,
        capabilities: Iterable[Capability] = tuple(Capability),
        poweroff_delay: float = 0.0,
        migrate_timeout: float = 300.0,
        failing: Iterable[str] = (),
    ) -> None:
        self.capabilities = frozenset(capabilities)
        self.memory, self.cores = memory, cores
        self.poweroff_delay = poweroff_delay
        self.migrate_timeout = migrate_timeout
        self.failing = set(failing)  # names of methods that raise BackendFailure
        self.held_disks: set[int] = set()  # volumes whose guest does not let them go
        self.held_nics: set[str] = set()  # MACs (lower case) of NICs the guest keeps
        self._vms: dict[InstanceId, _FakeVm] = {}
        self._events: asyncio.Queue[VmEvent] = asyncio.Queue()
        self._timers: set[asyncio.TimerHandle] = set()

    # --- lifecycle of the driver ----------------------------------------------------

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for vm in self._vms.values():
            if isinstance(vm.source, MigrationTicket):
                _listeners.pop((vm.source.host, vm.source.port), None)
        self._vms.clear()

    async def host_info(self) -> tuple[int, int]:
        return self.memory, self.cores

    # --- reading --------------------------------------------------------------------

    async def list(self) -> list[VmStatus]:
        return [self._status(vm) for vm in self._vms.values()]

    def events(self) -> AsyncIterator[VmEvent]:
        return self._iterate_events()

    async def _iterate_events(self) -> AsyncIterator[VmEvent]:
        while True:
            yield await self._events.get()

    # --- starting -------------------------------------------------------------------

    async def start(
        self, spec: VmSpec, *, incoming: MigrationTicket | Path | None = None
    ) -> VmStatus:
        self._fail("start")
        if spec.instance_id in self._vms:
            raise AlreadyExists(f"instance {spec.instance_id} already runs on this host")
        check_cpu_share(spec.cpu_share)
        if isinstance(incoming, Path) and not incoming.is_file():
            raise NotFound(f"there is no suspend file {incoming}")
        if isinstance(incoming, MigrationTicket) and (incoming.host, incoming.port) in _listeners:
            raise BackendFailure(f"cannot listen on {incoming.host}:{incoming.port}: in use")
        spec.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = VmState.running if incoming is None else VmState.incoming
        vm = _FakeVm(spec, next(_vm_ids), state, self, source=incoming, started=_now())
        if isinstance(incoming, MigrationTicket):
            _listeners[(incoming.host, incoming.port)] = vm
        self._vms[spec.instance_id] = vm
        if incoming is None:
            self._print(vm, f"{markers.UP} hostname=tashi root=fake uptime={self._uptime(vm):.2f}")
        self._save(vm)
        return self._status(vm)

    async def finish_incoming(self, instance_id: InstanceId) -> VmStatus:
        vm = self._get(instance_id)
        if vm.state is not VmState.incoming:
            raise InvalidState(f"instance {instance_id} is not waiting for an incoming VM")
        try:
            if isinstance(vm.source, Path):
                self._fail("finish_incoming")
                self._restore(vm, vm.source)
            else:
                async with asyncio.timeout(self.migrate_timeout):
                    await vm.received.wait()
                self._fail("finish_incoming")
        except (BackendFailure, TimeoutError) as exc:
            self._end(vm, ExitReason.failed)
            raise BackendFailure(f"instance {instance_id}: incoming VM failed: {exc}") from exc
        vm.state, vm.source, vm.started = VmState.running, None, _now()
        self._save(vm)
        return self._status(vm)

    async def finish_outgoing(self, instance_id: InstanceId) -> None:
        vm = self._get(instance_id)
        if vm.sending is None:
            raise InvalidState(f"instance {instance_id} is not sending itself anywhere")
        sending, vm.sending = vm.sending, None
        if "finish_outgoing" in self.failing:
            vm.state = VmState.running
            self._save(vm)
            raise BackendFailure(f"instance {instance_id}: the transfer failed (as asked)")
        if sending.target is not None:
            vm.state = VmState.running
            self._write_suspend(vm, sending.target)
        self._end(vm, ExitReason.suspended if sending.target else ExitReason.migrated)

    def _restore(self, vm: _FakeVm, path: Path) -> None:
        try:
            doc = json.loads(gzip.decompress(path.read_bytes()))
            if doc.get("magic") != _SUSPEND_MAGIC:
                raise ValueError("not a fake suspend file")
        except (OSError, ValueError, EOFError) as exc:
            raise BackendFailure(f"cannot restore from {path}: {exc}") from exc
        vm.uptime_base = float(doc["uptime"])

    # --- adoption -------------------------------------------------------------------

    async def adopt(self, state_dirs: Sequence[Path]) -> builtins.list[VmStatus]:
        found: builtins.list[VmStatus] = []
        for state_dir in state_dirs:
            doc = statefile.read(state_dir / STATE_FILE)
            if doc is None:
                continue
            spec = statefile.spec_from_json(doc["spec"])
            if spec.instance_id in self._vms:
                found.append(self._status(self._vms[spec.instance_id]))
                continue
            if not doc["alive"]:
                self._clean(state_dir)
                self._exit_event(spec.instance_id, ExitReason.failed, "died while unwatched")
                kind, target = doc.get("sending") or ("", "")
                if kind == "suspend" and Path(str(target)).is_file():  # died once it was whole
                    sending = Sending("suspend", Path(str(target)))
                    found.append(VmStatus(spec.instance_id, 0, VmState.exited, spec, sending))
                continue
            vm = _FakeVm(spec, int(doc["vm_id"]), VmState(doc["state"]), self)
            if doc.get("source"):  # a restore it had not finished
                vm.source = Path(doc["source"])
            if doc.get("sending"):
                kind, target = doc["sending"]
                vm.sending = Sending(kind, Path(target) if target else None)
                vm.state = VmState.migrating
            vm.uptime_base, vm.started = float(doc["uptime"]), _now()
            vm.console = [str(line) for line in doc["console"]]
            self._vms[spec.instance_id] = vm
            found.append(self._status(vm))
        return found

    # --- commands -------------------------------------------------------------------

    async def shutdown(self, instance_id: InstanceId) -> None:
        vm = self._get(instance_id)
        self._fail("shutdown")
        self._expect(vm, VmState.running, "shut down")
        vm.state = VmState.shutting_down
        self._later(self.poweroff_delay, self._poweroff, vm)

    def _poweroff(self, vm: _FakeVm) -> None:
        if self._vms.get(vm.spec.instance_id) is vm:
            self._print(vm, f"{markers.POWEROFF} reason=acpi uptime={self._uptime(vm):.2f}")
            self._end(vm, ExitReason.poweroff)

    async def destroy(self, instance_id: InstanceId) -> None:
        vm = self._vms.get(instance_id)
        if vm is not None:
            self._end(vm, ExitReason.destroyed)

    async def pause(self, instance_id: InstanceId) -> None:
        await self._set_running(instance_id, running=False)

    async def unpause(self, instance_id: InstanceId) -> None:
        await self._set_running(instance_id, running=True)

    async def _set_running(self, instance_id: InstanceId, *, running: bool) -> None:
        vm = self._get(instance_id)
        self._need(Capability.pause)
        target = VmState.running if running else VmState.paused
        if vm.state is target:
            return
        self._expect(vm, VmState.paused if running else VmState.running, "pause or unpause")
        self._fail("unpause" if running else "pause")
        vm.state = target
        self._save(vm)

    async def suspend(self, instance_id: InstanceId, target: Path) -> None:
        vm = self._get(instance_id)
        self._need(Capability.suspend)
        self._expect(vm, (VmState.running, VmState.paused), "suspend")
        check_movable(vm.spec, "suspend")
        self._fail("suspend")
        self._write_suspend(vm, target)
        self._end(vm, ExitReason.suspended)

    def _write_suspend(self, vm: _FakeVm, target: Path) -> None:
        doc = {"magic": _SUSPEND_MAGIC, "uptime": self._uptime(vm)}
        partial = target.with_name(target.name + ".partial")
        try:
            partial.write_bytes(gzip.compress(json.dumps(doc).encode(), compresslevel=1))
            partial.replace(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise BackendFailure(f"cannot write {target}: {exc.strerror}") from exc

    async def migrate(self, instance_id: InstanceId, ticket: MigrationTicket) -> MigrationStats:
        vm = self._get(instance_id)
        self._need(Capability.live_migration)
        self._expect(vm, (VmState.running, VmState.paused), "migrate")
        check_movable(vm.spec, "migrate")
        target = _listeners.get((ticket.host, ticket.port))
        if target is None or "migrate" in self.failing:
            raise BackendFailure(f"migration to {ticket.host}:{ticket.port} failed: refused")
        del _listeners[(ticket.host, ticket.port)]
        target.uptime_base = self._uptime(vm)
        target.received.set()
        self._end(vm, ExitReason.migrated)
        return MigrationStats(0.001, 0.0, vm.spec.memory * 2**20)

    async def set_cpu_share(self, instance_id: InstanceId, share: int) -> None:
        vm = self._get(instance_id)
        self._need(Capability.cpu_share)
        vm.spec = replace(vm.spec, cpu_share=check_cpu_share(share))
        self._save(vm)

    async def call(self, instance_id: InstanceId, request: VmmCall) -> str:
        vm = self._get(instance_id)
        op = VmmCall.parse(request.op).op
        if op == "list":
            return " ".join(VMM_OPS)
        if op == "console":
            self._need(Capability.console)
            return _tail("\n".join(vm.console) + "\n", request)
        self._expect(vm, (VmState.running, VmState.paused, VmState.shutting_down), op)
        if op == "reset":
            self._need(Capability.reset)
            vm.uptime_base, vm.started = 0.0, _now()
            self._print(vm, f"{markers.UP} hostname=tashi root=fake uptime=0.00")
            return f"instance {instance_id} was reset"
        if op == "changeCdrom":
            self._need(Capability.cdrom)
            return self._change_cdrom(vm, request.arg)
        if op == "nics":  # the fake's guest takes every NIC at once
            return "\n".join(
                f"nic{i} mac={n.mac.lower()} tap={n.tap} guest=ready"
                for i, n in enumerate(vm.spec.nics)
            )
        self._need(Capability.vnc)
        if op == "startVnc":
            return f"VNC for instance {instance_id}: fake display, password {secrets.token_hex(4)}"
        return f"VNC for instance {instance_id} stopped"

    async def attach_disk(self, instance_id: InstanceId, disk: DiskSpec) -> None:
        vm = self._get(instance_id)
        self._need(Capability.disk_hotplug)
        self._expect(vm, (VmState.running, VmState.paused), "attach a disk to")
        if disk.volume is None or not disk.shared or disk.read_only or disk.interface != "virtio":
            raise InvalidInput(f"instance {instance_id}: only a volume can be hot-plugged")
        if any(d.volume == disk.volume or d.path == disk.path for d in vm.spec.disks):
            raise AlreadyExists(f"instance {instance_id} has volume {disk.volume} already")
        self._fail("attach_disk")
        name = _guest_name(len(vm.spec.disks))
        vm.spec = replace(vm.spec, disks=(*vm.spec.disks, disk))
        size = disk.path.stat().st_size if disk.path.is_file() else 0
        self._print(
            vm, f"{markers.DISK} action=add name={name} size={size} uptime={self._uptime(vm):.2f}"
        )
        self._save(vm)

    async def detach_disk(self, instance_id: InstanceId, volume: int, timeout: float) -> None:
        vm = self._get(instance_id)
        self._need(Capability.disk_hotplug)
        self._expect(vm, (VmState.running, VmState.paused), "detach a disk from")
        place = next((i for i, d in enumerate(vm.spec.disks) if d.volume == volume), None)
        if place is None:
            return
        if volume in self.held_disks:
            raise InvalidState(
                f"instance {instance_id}: the guest did not let volume {volume} go within"
                f" {timeout:.0f} s; it keeps it"
            )
        self._fail("detach_disk")
        disks = vm.spec.disks
        vm.spec = replace(vm.spec, disks=(*disks[:place], *disks[place + 1 :]))
        name = _guest_name(place)
        self._print(vm, f"{markers.DISK} action=remove name={name} uptime={self._uptime(vm):.2f}")
        self._save(vm)

    async def attach_nic(self, instance_id: InstanceId, nic: NicSpec) -> None:
        vm = self._get(instance_id)
        self._need(Capability.nic_hotplug)
        self._expect(vm, (VmState.running, VmState.paused), "attach a NIC to")
        if any(n.mac.lower() == nic.mac.lower() or n.tap == nic.tap for n in vm.spec.nics):
            raise AlreadyExists(f"instance {instance_id} has a NIC {nic.mac} already")
        self._fail("attach_nic")
        vm.spec = replace(vm.spec, nics=(*vm.spec.nics, nic))
        self._save(vm)

    async def detach_nic(self, instance_id: InstanceId, mac: str, timeout: float) -> None:
        vm = self._get(instance_id)
        self._need(Capability.nic_hotplug)
        self._expect(vm, (VmState.running, VmState.paused), "detach a NIC from")
        macs = [n.mac.lower() for n in vm.spec.nics]
        if mac.lower() not in macs:
            return
        if macs.index(mac.lower()) != len(macs) - 1:
            raise InvalidInput(f"instance {instance_id}: NIC {mac} is not its last one")
        if mac.lower() in self.held_nics:
            raise InvalidState(
                f"instance {instance_id}: the guest did not let NIC {mac} go within"
                f" {timeout:.0f} s; it keeps it"
            )
        self._fail("detach_nic")
        vm.spec = replace(vm.spec, nics=tuple(vm.spec.nics)[:-1])
        self._save(vm)

    async def backup_disk(
        self, instance_id: InstanceId, source: Path, target: Path, timeout: float
    ) -> None:
        vm = self._get(instance_id)
        self._need(Capability.disk_hotplug)
        self._expect(vm, (VmState.running, VmState.paused), "copy a disk of")
        if source not in [d.path for d in vm.spec.disks]:
            raise NotFound(f"instance {instance_id} has no disk {source}")
        self._fail("backup_disk")
        if source.is_file():
            try:
                shutil.copyfile(source, target)
            except OSError as exc:
                raise BackendFailure(f"cannot copy {source.name}: {exc.strerror}") from exc

    def _change_cdrom(self, vm: _FakeVm, arg: str) -> str:
        if arg and not (Path(arg).is_absolute() and Path(arg).is_file()):
            raise InvalidInput(f"changeCdrom: {arg!r} is not an image file")
        vm.cdrom = arg
        return f"CD of instance {vm.spec.instance_id}: {arg or 'ejected'}"

    # --- test hooks -----------------------------------------------------------------

    def crash(self, instance_id: InstanceId) -> None:
        """The VM dies on its own (``exited``, reason ``failed``)."""
        self._end(self._get(instance_id), ExitReason.failed)

    def guest_pause(self, instance_id: InstanceId) -> None:
        """The VM stops on its own (as on a disk error): a ``paused`` event."""
        vm = self._get(instance_id)
        vm.state = VmState.paused
        self._save(vm)
        self._events.put_nowait(VmEvent(instance_id, VmState.paused, "stopped by itself"))

    @staticmethod
    def kill_offline(state_dir: Path) -> None:
        """Mark the VM of ``state_dir`` dead, as if it died while no driver watched it."""
        doc = statefile.read(state_dir / STATE_FILE)
        if doc is not None:
            statefile.write(state_dir / STATE_FILE, {**doc, "alive": False}, durable=False)

    @staticmethod
    def killed_while_sending(state_dir: Path, target: Path | None) -> None:
        """Record that the node manager died while the VM of ``state_dir`` was being suspended
        to ``target`` (or, with ``None``, live-migrated): the next driver adopts it sending."""
        doc = statefile.read(state_dir / STATE_FILE)
        if doc is not None:
            sending = ["suspend" if target else "migrate", str(target) if target else None]
            statefile.write(state_dir / STATE_FILE, {**doc, "sending": sending}, durable=False)

    # --- helpers --------------------------------------------------------------------

    def _get(self, instance_id: InstanceId) -> _FakeVm:
        try:
            return self._vms[instance_id]
        except KeyError:
            raise NotFound(f"this host runs no VM for instance {instance_id}") from None

    def _need(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise Unavailable(f"the fake driver is configured without {capability.value}")

    def _fail(self, operation: str) -> None:
        if operation in self.failing:
            raise BackendFailure(f"fake {operation} failed (as the test asked)")

    @staticmethod
    def _expect(vm: _FakeVm, allowed: VmState | tuple[VmState, ...], what: str) -> None:
        states = allowed if isinstance(allowed, tuple) else (allowed,)
        if vm.state not in states:
            raise InvalidState(
                f"cannot {what} instance {vm.spec.instance_id}: it is {vm.state.value}"
            )

    def _later(self, delay: float, action: Any, vm: _FakeVm) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            action(vm)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    def _uptime(self, vm: _FakeVm) -> float:
        return vm.uptime_base + (_now() - vm.started if vm.state is not VmState.incoming else 0)

    def _print(self, vm: _FakeVm, line: str) -> None:
        vm.console.append(line)
        with (vm.spec.state_dir / CONSOLE_LOG).open("a") as log:
            log.write(line + "\n")

    def _status(self, vm: _FakeVm) -> VmStatus:
        return VmStatus(vm.spec.instance_id, vm.vm_id, vm.state, vm.spec, vm.sending)

    def _save(self, vm: _FakeVm) -> None:
        doc = {
            "spec": statefile.spec_to_json(vm.spec),
            "vm_id": vm.vm_id,
            "state": vm.state.value,
            "alive": True,
            "uptime": self._uptime(vm),
            "console": vm.console[-50:],
            "source": str(vm.source) if isinstance(vm.source, Path) else None,
        }
        statefile.write(vm.spec.state_dir / STATE_FILE, doc, durable=False)

    def _end(self, vm: _FakeVm, reason: ExitReason) -> None:
        if self._vms.get(vm.spec.instance_id) is not vm:
            return
        del self._vms[vm.spec.instance_id]
        if isinstance(vm.source, MigrationTicket):
            _listeners.pop((vm.source.host, vm.source.port), None)
        self._clean(vm.spec.state_dir)
        self._exit_event(vm.spec.instance_id, reason, reason.value)

    @staticmethod
    def _clean(state_dir: Path) -> None:
        statefile.remove(state_dir / STATE_FILE)

    def _exit_event(self, instance_id: InstanceId, reason: ExitReason, detail: str) -> None:
        self._events.put_nowait(VmEvent(instance_id, VmState.exited, detail, reason))


def _now() -> float:
    return asyncio.get_running_loop().time()


def _guest_name(index: int) -> str:
    """The name a guest gives the virtio disk it finds ``index``-th (``vda`` first)."""
    return f"vd{chr(ord('a') + index)}"


def _tail(text: str, request: VmmCall) -> str:
    return text[-request.console_kilobytes() * 1024 :]
