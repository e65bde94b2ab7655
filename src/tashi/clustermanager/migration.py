"""Live migration, driven by the cluster manager as a background task.

``migrateVm`` checks and records the intent (Running -> MigratePrep), has the target node
prepare an incoming VM, moves the instance to MigrateTrans and answers; this module's task then
has the source node send the VM, the target finish it, and records the result: Running on the
target, or — if anything failed — Running on the source, where the VM kept running, with the
target's half-made VM destroyed. Total time and downtime go into the instance's history.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tashi.clustermanager.nodes import NodeGateway
from tashi.domain.errors import TashiError
from tashi.domain.models import Host, Instance
from tashi.domain.states import Action
from tashi.nodeapi.schemas import TicketOut
from tashi.runtime.tasks import Background

log = logging.getLogger(__name__)

#: Moves an instance through an action with extra fields; returns the saved instance.
Mover = Callable[..., Awaitable[Instance]]
#: Appends a line to an instance's history.
Recorder = Callable[[Instance, str, str], Awaitable[None]]


@dataclass
class Migrations:
    nodes: NodeGateway
    migrate_timeout: float
    _tasks: Background = field(default_factory=lambda: Background("a migration"))

    def start(
        self,
        inst: Instance,
        source: Host,
        target: Host,
        ticket: TicketOut,
        move: Mover,
        record: Recorder,
    ) -> None:
        self._tasks.spawn(self._run(inst, source, target, ticket, move, record))

    async def _run(
        self,
        inst: Instance,
        source: Host,
        target: Host,
        ticket: TicketOut,
        move: Mover,
        record: Recorder,
    ) -> None:
        try:
            stats = await self.nodes.migrate(source, inst, ticket, self.migrate_timeout)
            vm_id = await self.nodes.finish_incoming(target, inst)
        except TashiError as exc:
            await self._roll_back(inst, source, target, move, record, exc)
            return
        await move(inst, Action.migrated, host_id=target.id, vm_id=vm_id)
        downtime = f"{stats.downtimeMs:.0f} ms" if stats.downtimeMs is not None else "unknown"
        await record(
            inst,
            "migrated",
            f"from {source.name} to {target.name} in {stats.totalSeconds:.2f} s,"
            f" downtime {downtime}",
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
        await move(inst, Action.migrate_failed)
        await record(
            inst, "migrateFailed", f"to {target.name}: {error.message}; still on {source.name}"
        )

    async def wait(self) -> None:
        """Wait for every migration in flight (tests, orderly shutdown)."""
        await self._tasks.wait()
