"""HA restart without duplicates (ADR 0010): a lost host's instances go back to Pending once its
lease has surely run out.

Every heartbeat reply grants the node manager a lease (``[ClusterManagerService]
hostLeaseTime``; ``hosts.lease_expires`` records it); a node manager that has had no reply for
that long stops its own VMs (``nodemanager/reporting.py``). ``liveness.py`` marks a silent host
down and its instances Orphaned. This pass, run by the cluster manager's supervised tasks, waits
until the down host's lease plus ``restartMargin`` has passed — by then its node manager has
fenced itself if it still runs — and moves each Orphaned instance of it to Pending
(``reschedule``: no host, no VM id, the reason and a history line saying why), in one
transaction per host that first checks, under the host's row lock, that the host is still down
and its lease not renewed. The scheduler then places them like any Pending instance.

What the host was doing when it was lost decides (the ``hostLost`` history line records it): an
instance lost while ShuttingDown or Destroying is removed (its VM is gone, as was asked); one
lost while migrating is left Orphaned for the migration's own settling (``migration.py``).
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import datetime, timedelta

from tashi.clustermanager.database import Database
from tashi.domain.clock import Clock
from tashi.domain.models import Host, Instance
from tashi.domain.states import Action, InstanceState, next_state
from tashi.storage.contract import InstanceChanges, InstanceFilter, Transaction

log = logging.getLogger(__name__)

KIND = "rescheduled"
_LOST_FROM = re.compile(r"; (\w+) -> Orphaned$")
_REMOVE = {InstanceState.ShuttingDown.name, InstanceState.Destroying.name}
_LEAVE = {InstanceState.MigratePrep.name, InstanceState.MigrateTrans.name}
#: States of an instance a self-fenced host may have stopped (and that should run again).
_FENCED = sorted(
    {
        InstanceState.Activating,
        InstanceState.Running,
        InstanceState.Pausing,
        InstanceState.Paused,
        InstanceState.Unpausing,
        InstanceState.Orphaned,
    }
)


class HighAvailability:
    def __init__(self, db: Database, clock: Clock, lease: float, margin: float) -> None:
        self._db = db
        self._clock = clock
        self._lease = lease
        self._margin = timedelta(seconds=margin)

    @property
    def enabled(self) -> bool:
        return self._lease > 0

    async def check(self) -> list[Instance]:
        """One pass; returns the instances it moved to Pending."""
        if not self.enabled:
            return []
        now = self._clock.now()
        hosts = await self._db.read(lambda tx: tx.hosts.list())
        moved: list[Instance] = []
        for host in hosts:
            if _due(host, now, self._margin):
                moved += await self._db.write(functools.partial(self._restart, host=host, now=now))
        return moved

    async def after_fence(self, host: Host, reported: set[int]) -> list[Instance]:
        """``host`` reports again after its lease ran out (``host`` as stored before the
        report): its node manager has stopped its VMs itself. Instances the store places there
        that it no longer reports go to Pending, to be started elsewhere, rather than being
        taken for VMs that ended on their own (reconciliation would remove them)."""
        now = self._clock.now()
        if not self.enabled or host.lease_expires is None or now <= host.lease_expires:
            return []

        def run(tx: Transaction) -> list[Instance]:
            stored = tx.instances.find(InstanceFilter(host_id=host.id, states=_FENCED))
            moved = []
            for inst in stored:
                if inst.id in reported:
                    continue
                if inst.state is not InstanceState.Orphaned:
                    orphan = next_state(inst.state, Action.host_lost)
                    inst = tx.instances.transition(inst.id, inst.state, orphan, now=now)
                moved.append(_reschedule(tx, inst, host, now, fenced=True))
            return moved

        moved = await self._db.write(run)
        if moved:
            log.warning(
                "host %s is back after its lease ran out; %d instance(s) it stopped go back"
                " to Pending",
                host.name,
                len(moved),
            )
        return moved

    def _restart(self, tx: Transaction, *, host: Host, now: datetime) -> list[Instance]:
        locked = tx.hosts.lock(host.id)
        if not _due(locked, now, self._margin):
            return []  # it came back (or renewed its lease) meanwhile
        orphans = tx.instances.find(
            InstanceFilter(host_id=host.id, states=[InstanceState.Orphaned])
        )
        moved = []
        for inst in orphans:
            lost_from = _lost_from(tx, inst)
            if lost_from in _LEAVE:
                continue
            if lost_from in _REMOVE:
                tx.instances.remove(inst.id, inst.state)
                tx.events.add(
                    inst.id, "removed", f"lost with {host.name} while {lost_from}", now=now
                )
                continue
            moved.append(_reschedule(tx, inst, host, now))
        if moved:
            log.warning(
                "host %s lost, its lease ran out at %s: %d instance(s) back to Pending",
                host.name,
                locked.lease_expires,
                len(moved),
            )
        return moved


def _due(host: Host, now: datetime, margin: timedelta) -> bool:
    """Down, and its last lease (plus the margin) is over. A host never granted a lease is
    left alone: nothing proves its node manager stopped its VMs."""
    return not host.up and host.lease_expires is not None and now >= host.lease_expires + margin


def _lost_from(tx: Transaction, inst: Instance) -> str | None:
    for event in reversed(tx.events.list(inst.id, limit=20)):
        if event.kind == "hostLost":
            match = _LOST_FROM.search(event.message)
            return match.group(1) if match else None
    return None


def _reschedule(
    tx: Transaction, inst: Instance, host: Host, now: datetime, *, fenced: bool = False
) -> Instance:
    reason = f"restarted elsewhere: host {host.name} was lost and its lease ran out"
    if fenced:
        reason = f"restarted elsewhere: host {host.name} stopped it when its lease ran out"
    changes = InstanceChanges(clear_host=True, clear_vm=True, reason=reason)
    target = next_state(inst.state, Action.reschedule)
    moved = tx.instances.transition(inst.id, inst.state, target, now=now, changes=changes)
    how = "stopped it itself (self-fence)" if fenced else "was lost"
    tx.events.add(
        inst.id,
        KIND,
        f"Orphaned -> Pending: host {host.name} {how}; its lease ran out at"
        f" {host.lease_expires:%H:%M:%S}; the scheduler starts it again elsewhere",
        now=now,
    )
    return moved
