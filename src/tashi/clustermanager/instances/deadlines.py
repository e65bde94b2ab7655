"""No instance stays in a transitional state forever: what happens when its deadline passes.

Every transitional state has a deadline (``tashi.domain.states.DEADLINES``). Heartbeats and
node events normally end these states long before; a deadline passes only when something was
lost on the way (a node manager restarted mid-operation, the cluster manager restarted during
a migration, a guest ignored the ACPI power button). Each pass of ``Deadlines.check`` moves the
overdue instances on, each with a compare-and-swap and a line in its history:

* ShuttingDown — the guest ignored the power button: destroy it.
* Stopping — the same, and the instance is Stopped (its persistent disks are kept).
* Destroying — ask the node again; if the host is gone from the cluster, drop the record.
* Activating, Resuming, PreparingDisk — the start did not complete: Held, so the scheduler
  tries again (the node is told to destroy whatever it half-made).
* Pausing, Unpausing, Suspending — the operation did not complete: back to where it started
  (the next heartbeat corrects this if the node says otherwise).
* MigratePrep, MigrateTrans — these are settled on every pass, not only when overdue, once
  no task of this process drives them (the cluster manager restarted mid-migration): the two
  hosts are asked where the VM is (``migration.Migrations.settle``; a source that cannot be
  asked because HA proved it lost: the target's copy, or a start elsewhere). Only when there is
  nothing to ask (no recorded target, a host gone) does the deadline send it back to Running on
  the source, or Orphaned when the source is down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.clustermanager.instances.migration import LostHosts
from tashi.domain.clock import Clock
from tashi.domain.errors import NotFound, StateConflict, TashiError
from tashi.domain.models import Host, Instance
from tashi.domain.states import (
    DEADLINES,
    OFF_HOST,
    TRANSITIONAL,
    Action,
    InstanceState,
    next_state,
)
from tashi.storage.contract import InstanceChanges, InstanceFilter, Transaction

log = logging.getLogger(__name__)
S = InstanceState

_MIGRATING = (S.MigratePrep, S.MigrateTrans)

#: Settles a migration nobody drives, given what HA knows of lost hosts; False when there is
#: nothing to go on.
MigrationSettler = Callable[[Instance, LostHosts | None], Awaitable[bool]]

_GIVE_UP: dict[InstanceState, Action] = {
    S.Activating: Action.start_failed,
    S.Resuming: Action.start_failed,
    S.PreparingDisk: Action.start_failed,
    S.Pausing: Action.pause_failed,
    S.Unpausing: Action.unpause_failed,
    S.Suspending: Action.suspend_failed,
    S.MigratePrep: Action.migrate_failed,
    S.MigrateTrans: Action.migrate_failed,
}


class Deadlines:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        nodes: NodeGateway,
        deadlines: Mapping[InstanceState, float] = DEADLINES,
        settle_migration: MigrationSettler | None = None,
        lost: LostHosts | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._nodes = nodes
        self._deadlines = deadlines
        self._settle_migration = settle_migration
        self._lost = lost

    async def check(self) -> list[Instance]:
        """One pass; returns the instances it found overdue."""
        now = self._clock.now()
        stuck = await self._db.read(
            lambda tx: tx.instances.find(InstanceFilter(states=sorted(TRANSITIONAL)))
        )
        overdue = [
            i
            for i in stuck
            if i.state_since is not None
            and now - i.state_since > timedelta(seconds=self._deadlines.get(i.state, 600.0))
        ]
        for inst in stuck:
            if inst.state in _MIGRATING and inst not in overdue:
                await self._migration(inst, overdue=False)
        for inst in overdue:
            try:
                if inst.state in _MIGRATING and await self._migration(inst, overdue=True):
                    continue
                await self._settle(inst)
            except StateConflict:
                continue  # something else moved it meanwhile: nothing to do
            except TashiError as exc:
                log.warning(
                    "instance %s is overdue in %s and could not be moved on: %s",
                    inst.name,
                    inst.state.name,
                    exc.message,
                )
        return overdue

    async def _migration(self, inst: Instance, *, overdue: bool) -> bool:
        """Settle a migration nobody drives; True when that was done or is under way. A host
        that cannot be asked is asked again on the next pass, until the deadline gives up."""
        if self._settle_migration is None:
            return False
        try:
            return await self._settle_migration(inst, self._lost)
        except StateConflict:
            return True  # it moved meanwhile
        except TashiError as exc:
            log.info("the migration of %s is not settled yet: %s", inst.name, exc.message)
            return not overdue

    async def _host(self, inst: Instance) -> Host | None:
        host_id = inst.host_id
        if host_id is None:
            return None
        try:
            return await self._db.read(lambda tx: tx.hosts.get(host_id))
        except NotFound:
            return None

    async def _settle(self, inst: Instance) -> None:
        host = await self._host(inst)
        if inst.state in (S.ShuttingDown, S.Destroying):
            if host is not None and host.up:
                await self._nodes.destroy(host, inst)
            await self._finish(
                inst,
                "removed after its deadline: the VM was destroyed"
                if host is not None and host.up
                else "removed after its deadline: its host is gone",
            )
            return
        if inst.state is S.Stopping:  # the guest ignored the power button: pull the plug
            if host is not None and host.up:
                await self._nodes.destroy(host, inst)
            await self._give_up(inst, Action.exited)
            return
        action = _GIVE_UP[inst.state]
        if inst.state in _MIGRATING and host is not None and not host.up:
            action = Action.host_lost  # not Running on a host that is down: HA decides
        if action is Action.start_failed and host is not None and host.up:
            await self._quietly_destroy(host, inst)
        await self._give_up(inst, action)

    async def _quietly_destroy(self, host: Host, inst: Instance) -> None:
        try:
            await self._nodes.destroy(host, inst)
        except TashiError as exc:
            log.info("could not clear %s from %s: %s", inst.name, host.name, exc.message)

    async def _finish(self, inst: Instance, message: str) -> None:
        now = self._clock.now()

        def run(tx: Transaction) -> None:
            tx.instances.remove(inst.id, inst.state)
            tx.events.add(inst.id, "deadline", message, now=now)

        await self._db.write(run)

    async def _give_up(self, inst: Instance, action: Action) -> None:
        now = self._clock.now()
        target = next_state(inst.state, action)
        leaves = target in OFF_HOST
        changes = InstanceChanges(
            clear_host=leaves,
            clear_vm=leaves,
            reason=f"{inst.state.name} did not finish in time" if leaves else None,
        )

        def run(tx: Transaction) -> None:
            tx.instances.transition(inst.id, inst.state, target, now=now, changes=changes)
            tx.events.add(
                inst.id,
                "deadline",
                f"{inst.state.name} -> {target.name}: it did not finish in time",
                now=now,
            )

        await self._db.write(run)
