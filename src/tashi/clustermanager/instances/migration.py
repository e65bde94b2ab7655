"""Live migration, driven by the cluster manager as a background task.

``migrateVm`` checks and records the intent (Running -> MigratePrep), has the target node
prepare an incoming VM, moves the instance to MigrateTrans and answers; this module's task then
has the source node send the VM, the target finish it, and records the result: Running on the
target, or — if the source said the transfer failed — Running on the source, where the VM kept
running, with the target's half-made VM destroyed. Total time and downtime go into the
instance's history.

A failure is only believed when the source says so. When its node manager took the request and
never answered (``Unanswered``: it died or hung while QEMU carried on sending), or the target
failed to run a VM the source had already sent, nobody knows where the VM is: rolling back
could destroy the only copy. The task then stops driving the migration and leaves it to
``settle``, below, exactly as if the cluster manager had restarted.

A migration whose driver was lost (the cluster manager restarted while the instance was in
MigratePrep or MigrateTrans) is settled by ``settle`` from what the two node managers say: the
source still runs the VM (the transfer never happened or failed there) → Running on the source
and the target's half-made VM destroyed; the source is still sending → wait; the source no longer
has it (it forgets a VM once it has been sent) → the target has the only copy: finish it there
if it still waits for the word to run, and record it Running on the target. Never the other
way round: giving up on the source when the target has the VM would leave the only copy to be
fenced as a stranger.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.domain.errors import NotFound, TashiError, Unanswered, Unavailable
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import Host, Instance, Usage
from tashi.domain.nodes import Ticket, VmStatus
from tashi.domain.states import Action, InstanceState
from tashi.runtime.tasks import Background

log = logging.getLogger(__name__)

#: Moves an instance through an action with extra fields; returns the saved instance.
Mover = Callable[..., Awaitable[Instance]]
#: Appends a line to an instance's history.
Recorder = Callable[[Instance, str, str], Awaitable[None]]


class LostHosts(Protocol):
    """What high availability knows of lost hosts (``ha.HighAvailability``)."""

    @property
    def enabled(self) -> bool:
        """Whether lost VMs are started again elsewhere at all."""

    async def is_lost(self, host: Host) -> bool:
        """Whether ``host`` is proven lost, its VMs stopped."""

    async def restart_lost(self, inst: Instance, host: Host, cause: str = "lost") -> Instance:
        """Send an instance lost with ``host`` back to Pending."""


#: The hint that records a migration's target host while it is in flight (cleared after).
TARGET_HINT = "__migrate_target"


def target_of(inst: Instance) -> HostId | None:
    """The host an instance in MigratePrep/MigrateTrans is moving to, if recorded."""
    raw = inst.hints.get(TARGET_HINT, "")
    return HostId(int(raw)) if raw.isdigit() else None


def without_target(inst: Instance) -> dict[str, str]:
    return {k: v for k, v in inst.hints.items() if k != TARGET_HINT}


@dataclass
class Migrations:
    nodes: NodeGateway
    migrate_timeout: float
    _tasks: Background = field(default_factory=lambda: Background("a migration"))
    #: The migrations this process drives: instance -> (target host, the room it takes there).
    _driving: dict[InstanceId, tuple[HostId, Usage]] = field(default_factory=dict)

    def begin(self, inst: Instance, target: HostId) -> None:
        """``migrateVm`` took this instance: this process drives its migration from now on,
        and its room on the target counts as taken (``incoming``) until it ends."""
        self._driving[inst.id] = (target, Usage(1, inst.memory, inst.cores))

    def abandon(self, iid: InstanceId) -> None:
        self._driving.pop(iid, None)

    def driving(self, iid: InstanceId) -> bool:
        return iid in self._driving

    def incoming(self, host: HostId, but: InstanceId | None = None) -> Usage:
        """What the migrations in flight to ``host`` (other than ``but``'s) will take of it."""
        moving = [u for i, (t, u) in list(self._driving.items()) if t == host and i != but]
        return Usage(
            instances=len(moving),
            memory=sum(u.memory for u in moving),
            cores=sum(u.cores for u in moving),
        )

    def start(
        self,
        inst: Instance,
        source: Host,
        target: Host,
        ticket: Ticket,
        move: Mover,
        record: Recorder,
    ) -> None:
        self._tasks.spawn(
            self._forgetting(inst.id, self._drive(inst, source, target, ticket, move, record))
        )

    async def _forgetting(self, iid: InstanceId, drive: Awaitable[None]) -> None:
        """Run ``drive``; the instance is no longer this process's to drive once it ends."""
        try:
            await drive
        finally:
            self._driving.pop(iid, None)

    async def _drive(
        self,
        inst: Instance,
        source: Host,
        target: Host,
        ticket: Ticket,
        move: Mover,
        record: Recorder,
    ) -> None:
        try:
            stats = await self.nodes.migrate(source, inst, ticket, self.migrate_timeout)
        except Unanswered as exc:
            self._left(inst, source, "the source", exc)
            return
        except TashiError as exc:
            await self._roll_back(inst, source, target, move, record, exc)
            return
        try:
            vm_id = await self.nodes.finish_incoming(target, inst)
        except TashiError as exc:  # the source sent it: only the target has the VM now
            self._left(inst, target, "the target", exc)
            return
        await move(
            inst, Action.migrated, host_id=target.id, vm_id=vm_id, hints=without_target(inst)
        )
        downtime = f"{stats.downtime_ms:.0f} ms" if stats.downtime_ms is not None else "unknown"
        await record(
            inst,
            "migrated",
            f"from {source.name} to {target.name} in {stats.total_seconds:.2f} s,"
            f" downtime {downtime}",
        )

    @staticmethod
    def _left(inst: Instance, host: Host, which: str, error: TashiError) -> None:
        """The migration's outcome is not known: leave it to ``settle`` (the deadline pass
        calls it once this task no longer drives the instance), which asks both hosts."""
        log.warning(
            "migration of %s: %s (%s) did not say how it ended (%s); asking both hosts",
            inst.name,
            which,
            host.name,
            error.message,
        )

    async def _roll_back(
        self,
        inst: Instance,
        source: Host,
        target: Host,
        move: Mover,
        record: Recorder,
        error: TashiError,
    ) -> None:
        try:
            await self.nodes.destroy(target, inst)
        except TashiError as exc:
            log.warning(
                "could not remove the incoming VM of %s on %s: %s",
                inst.name,
                target.name,
                exc.message,
            )
        await move(inst, Action.migrate_failed, hints=without_target(inst))
        await record(
            inst, "migrateFailed", f"to {target.name}: {error.message}; still on {source.name}"
        )

    async def settle(
        self,
        inst: Instance,
        source: Host,
        target: Host,
        move: Mover,
        record: Recorder,
        lost: LostHosts | None = None,
    ) -> None:
        """Bring a migration nobody drives any more to its end (see the module docstring).
        ``TashiError`` from a node that cannot be asked leaves the instance as it is — unless
        the source cannot be asked because it is proven lost (``lost.is_lost``): its VMs are
        stopped then, and the target's copy, if whole, is the VM."""
        try:
            seen = (await self.nodes.vms(source)).get(inst.id)
        except Unavailable:
            if lost is None or source.up or not await lost.is_lost(source):
                raise
            await self._source_lost(inst, source, target, move, record, lost)
            return
        _said(inst, source, seen)
        if seen is not None and seen.state == "migrating":
            return  # the source is still sending; its own timeout ends that
        if seen is not None:
            why = TashiError("the source still runs it: the transfer did not complete")
            await self._roll_back(inst, source, target, move, record, why)
            return
        arrived = (await self.nodes.vms(target)).get(inst.id)
        _said(inst, target, arrived)
        if arrived is None:
            if lost is not None and lost.enabled:  # gone from both: nothing can run twice
                log.warning("%s is on neither host: starting it again elsewhere", inst.name)
                await lost.restart_lost(inst, source, "vanished")
                return
            await move(inst, Action.migrate_failed, hints=without_target(inst))
            await record(inst, "migrateFailed", f"to {target.name}: the VM is on neither host")
            return
        vm_id = await self._running_on(target, inst, arrived)
        if inst.state is InstanceState.MigratePrep:
            inst = await move(inst, Action.migrate_transfer)
        how = "finished by asking both hosts (the cluster manager or the source's node manager"
        await self._migrated(
            inst, source, target, vm_id, move, record, how + " restarted meanwhile)"
        )

    async def _running_on(self, target: Host, inst: Instance, arrived: VmStatus) -> int:
        """The vm id of the target's copy, told to run first if it still waits (sent, never
        told to run)."""
        if arrived.state == "incoming":
            return await self.nodes.finish_incoming(target, inst)
        return arrived.vm_id

    @staticmethod
    async def _migrated(
        inst: Instance,
        source: Host,
        target: Host,
        vm_id: int,
        move: Mover,
        record: Recorder,
        how: str,
    ) -> None:
        """Record the instance Running on the target, its migration ended ``how``."""
        await move(
            inst, Action.migrated, host_id=target.id, vm_id=vm_id, hints=without_target(inst)
        )
        await record(inst, "migrated", f"from {source.name} to {target.name}; {how}")

    async def _source_lost(
        self,
        inst: Instance,
        source: Host,
        target: Host,
        move: Mover,
        record: Recorder,
        lost: LostHosts,
    ) -> None:
        """The source is lost with its VMs: run the target's copy if QEMU received all of it
        (``finish_incoming`` runs a VM only once its incoming state is complete, which QEMU's
        source reaches only after it stopped its own copy for good); with no whole copy there,
        the VM is lost and starts again elsewhere, from its image."""
        arrived = (await self.nodes.vms(target)).get(inst.id)  # unreachable: ask again later
        if arrived is not None and inst.state is InstanceState.MigratePrep:
            await self.nodes.destroy(target, inst)  # the source was never told to send it
            arrived = None
        try:
            if arrived is None:
                raise NotFound(f"host {target.name} has no copy of it")
            vm_id = await self._running_on(target, inst, arrived)
        except TashiError as exc:
            log.warning(
                "%s was lost with %s while it migrated to %s, which has no whole copy (%s):"
                " starting it again elsewhere",
                inst.name,
                source.name,
                target.name,
                exc.message,
            )
            await lost.restart_lost(inst, source)
            return
        await self._migrated(inst, source, target, vm_id, move, record, f"{source.name} was lost")

    async def wait(self) -> None:
        """Wait for every migration in flight (tests, orderly shutdown)."""
        await self._tasks.wait()


def _said(inst: Instance, host: Host, vm: VmStatus | None) -> None:
    what = "no VM of it" if vm is None else f"its VM, {vm.state}"
    log.info("settling the migration of %s: %s has %s", inst.name, host.name, what)
