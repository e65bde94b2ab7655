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
from tashi.clustermanager.restart import reschedule
from tashi.domain.clock import Clock
from tashi.domain.models import Host, Instance
from tashi.domain.states import Action, InstanceState, next_state
from tashi.storage.contract import InstanceFilter, Transaction

log = logging.getLogger(__name__)

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
        """``host`` reports (or registers) again, ``host`` as stored before the report, with
        the instance ids it reports. Instances it no longer reports go to Pending, to be
        started elsewhere, rather than being taken for VMs that ended on their own
        (reconciliation would remove them):

        * after its lease ran out, its node manager stopped its VMs itself (self-fence):
          every instance the store places there that it does not report;
        * back before that, after it was marked down: the Orphaned ones, whose VMs died with
          the host (a crash and a quick restart) — except those it lost while shutting down
          or being destroyed (removed, as was asked) or migrating (left to that settling)."""
        now = self._clock.now()
        lapsed = host.lease_expires is not None and now > host.lease_expires
        if not self.enabled or not (lapsed or not host.up):
            return []

        def run(tx: Transaction) -> list[Instance]:
            states = _FENCED if lapsed else [InstanceState.Orphaned]
            stored = tx.instances.find(InstanceFilter(host_id=host.id, states=states))
            moved = []
            for inst in stored:
                if inst.id in reported or _settled_otherwise(tx, inst, host, now):
                    continue
                if inst.state is not InstanceState.Orphaned:
                    orphan = next_state(inst.state, Action.host_lost)
                    inst = tx.instances.transition(inst.id, inst.state, orphan, now=now)
                moved.append(reschedule(tx, inst, host, now, "fenced" if lapsed else "crashed"))
            return moved

        moved = await self._db.write(run)
        if moved:
            log.warning(
                "host %s is back %s; %d instance(s) it no longer runs go back to Pending",
                host.name,
                "after its lease ran out" if lapsed else "without its VMs",
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
            if _settled_otherwise(tx, inst, host, now):
                continue
            moved.append(reschedule(tx, inst, host, now, "lost"))
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


def _settled_otherwise(tx: Transaction, inst: Instance, host: Host, now: datetime) -> bool:
    """An Orphaned instance that is not to be started again: one lost while migrating is left
    alone; one lost while shutting down or being destroyed is removed."""
    if inst.state is not InstanceState.Orphaned:
        return False
    lost_from = _lost_from(tx, inst)
    if lost_from in _LEAVE:
        return True
    if lost_from in _REMOVE:
        tx.instances.remove(inst.id, inst.state)
        tx.events.add(inst.id, "removed", f"lost with {host.name} while {lost_from}", now=now)
        return True
    return False


def _lost_from(tx: Transaction, inst: Instance) -> str | None:
    for event in reversed(tx.events.list(inst.id, limit=20)):
        if event.kind == "hostLost":
            match = _LOST_FROM.search(event.message)
            return match.group(1) if match else None
    return None
