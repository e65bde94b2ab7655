"""HA restart without duplicates (ADR 0010): a lost host's instances go back to Pending once
it has surely stopped them, and only then.

A node manager keeps its VMs while it holds a fresh grant from its cluster manager (every reply
to a heartbeat; ``hosts.lease_expires`` records the latest) or from any one of its witness hosts
(``witnesses.py``); with none for a whole lease it stops them itself, or its watchdog does
(``nodemanager/lease.py``, ``nodemanager/watchdog.py``). ``liveness.py`` marks a silent host
down and its instances Orphaned. ``check``, run every second, takes each down host whose lease
from the cluster manager ran out at least ``restartMargin`` ago, asks every witness it may be
using whether it has granted it anything for that long (``WitnessDesk.confirm``), and only if
all say no moves each Orphaned instance to Pending (``restart.reschedule``), in one transaction
that first checks, under the host's row lock, that the host is still down and its lease not
renewed. A host that still answers a witness (the cluster manager lost it, the others did not)
keeps its VMs, and they are not started elsewhere.

What the host was doing when it was lost decides (the ``hostLost`` history line records it): an
instance lost while ShuttingDown or Destroying is removed (its VM is gone, as was asked). One
that was being migrated away is not orphaned at all (``liveness.py``): its VM may be whole on
the target. The migration's own settling (``migration.Migrations.settle``) asks ``is_lost``
whether the source is proven lost, then finishes the VM on the target or, if the target has
no copy, sends it back to Pending with ``restart_lost``.

``on_report`` handles a host that reports again, in the report's own write: the VMs it says it
fenced, and, after a crash, the Orphaned instances it no longer runs.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts.witnesses import WitnessDesk, voters_of
from tashi.clustermanager.instances.migration import without_target
from tashi.clustermanager.instances.restart import reschedule
from tashi.clustermanager.instances.suspends import SuspendArea
from tashi.domain.clock import Clock
from tashi.domain.errors import NotFound
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import Host, Instance
from tashi.domain.states import INSTANCE_TRANSITIONS, Action, InstanceState, next_state
from tashi.storage.contract import InstanceFilter, Transaction

log = logging.getLogger(__name__)

_LOST_FROM = re.compile(r"; (\w+) -> Orphaned$")
_REMOVE = {InstanceState.ShuttingDown.name, InstanceState.Destroying.name}
_LEAVE = {InstanceState.MigratePrep.name, InstanceState.MigrateTrans.name}


class HighAvailability:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        lease: float,
        margin: float,
        witnesses: WitnessDesk,
        suspends: SuspendArea,
    ) -> None:
        self._db = db
        self._suspends = suspends
        self._clock = clock
        self._lease = lease
        self._margin = timedelta(seconds=margin)
        self._witnesses = witnesses
        self._waiting: dict[HostId, str] = {}  # why each due host is not restarted (logged once)

    @property
    def enabled(self) -> bool:
        return self._lease > 0

    async def check(self) -> list[Instance]:
        """One pass; returns the instances it moved to Pending."""
        if not self.enabled:
            return []
        now = self._clock.now()
        # only the down hosts whose lease (and the margin) is over: not every host every second
        hosts = await self._db.read(lambda tx: tx.hosts.lapsed(now - self._margin))
        for gone in set(self._waiting) - {h.id for h in hosts}:
            del self._waiting[gone]
        moved: list[Instance] = []
        for host in hosts:
            if not _due(host, now, self._margin):
                continue
            if await self._confirmed(host):
                moved += await self._db.write(functools.partial(self._restart, host=host, now=now))
        await self._discard_suspend_files(moved)
        return moved

    async def is_lost(self, host: Host) -> bool:
        """Whether ``host`` is proven lost, as ``check`` would restart its VMs: down, its lease
        (and the margin) over, and every witness it may use confirms it silent. Its VMs are
        stopped then (self-fence, watchdog). Never true without HA."""
        return (
            self.enabled
            and _due(host, self._clock.now(), self._margin)
            and (await self._confirmed(host))
        )

    async def restart_lost(self, inst: Instance, host: Host, cause: str = "lost") -> Instance:
        """Send an instance whose VM was lost with ``host`` (``is_lost``; ``cause`` "vanished":
        lost in a migration, neither host has it) back to Pending, to start again elsewhere
        from its image, as ``check`` does with the host's orphans."""
        now = self._clock.now()

        def run(tx: Transaction) -> Instance:
            current = inst
            if inst.state is not InstanceState.Orphaned:
                lost = next_state(inst.state, Action.host_lost)
                current = tx.instances.transition(inst.id, inst.state, lost, now=now)
            # a migration's target goes with it (``reschedule`` keeps the other hints)
            kept = replace(current, hints=without_target(current))
            return reschedule(tx, kept, host, now, cause)

        moved = await self._db.write(run)
        await self._discard_suspend_files([moved])
        return moved

    async def _discard_suspend_files(self, moved: list[Instance]) -> None:
        """A restarted instance starts from its image: a suspend file of it (a resume that
        never finished, a suspend cut short by the host's loss) is of no use any more."""
        for inst in moved:
            await self._suspends.discard(inst)

    async def _confirmed(self, host: Host) -> bool:
        link, voters = await self._db.read(functools.partial(voters_of, host_id=host.id))
        verdict = await self._witnesses.confirm(host, link, voters)
        if verdict.confirmed:
            self._waiting.pop(host.id, None)
            return True
        if self._waiting.get(host.id) != verdict.waiting_for:
            self._waiting[host.id] = verdict.waiting_for
            log.warning(
                "host %s is down and its lease from the cluster manager ran out, but its VMs"
                " are not restarted elsewhere until every witness confirms it is silent;"
                " waiting for: %s",
                host.name,
                verdict.waiting_for,
            )
        return False

    def on_report(
        self, tx: Transaction, host: Host, reported: set[int], fenced: Sequence[int], now: datetime
    ) -> list[Instance]:
        """In the write of a report, ``host`` as stored before it (read in that write, so a
        host marked down meanwhile is seen down): ``reported``, the instance ids it reports,
        and ``fenced``, those whose VMs it stopped itself (self-fence or watchdog). Those go
        back to Pending to run elsewhere, rather than being taken for VMs that ended on their
        own (reconciliation would remove them); so do, when the host was down, the Orphaned
        ones it no longer runs (their VMs died with it: a crash and a quick restart), except
        those it lost while shutting down or being destroyed (removed, as was asked) or
        migrating (left to that settling). The instances it moved (``after_report``)."""
        if not self.enabled or not (fenced or not host.up):
            return []
        moved = [
            i
            for iid in fenced
            if iid not in reported and (i := _fenced(tx, InstanceId(iid), host, now)) is not None
        ]
        if not host.up:
            orphans = tx.instances.find(
                InstanceFilter(host_id=host.id, states=[InstanceState.Orphaned])
            )
            for inst in orphans:
                if inst.id in reported or _settled_otherwise(tx, inst, host, now):
                    continue
                moved.append(reschedule(tx, inst, host, now, "crashed"))
        return moved

    async def after_report(self, host: Host, moved: list[Instance], fenced: bool) -> None:
        """After the report's write committed: the suspend files of the instances
        ``on_report`` moved are of no use any more."""
        await self._discard_suspend_files(moved)
        if moved:
            log.warning(
                "host %s reports %d instance(s) it no longer runs (%s): back to Pending",
                host.name,
                len(moved),
                "it stopped them when its lease ran out" if fenced else "they died with it",
            )

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
                "host %s lost, its lease ran out at %s and every witness confirms it is silent:"
                " %d instance(s) back to Pending",
                host.name,
                locked.lease_expires,
                len(moved),
            )
        return moved


def _fenced(tx: Transaction, iid: InstanceId, host: Host, now: datetime) -> Instance | None:
    """The instance whose VM ``host`` stopped when its lease ran out, back to Pending (or
    removed, or left to its migration); ``None`` if it is no longer the host's."""
    try:
        inst = tx.instances.get(iid)
    except NotFound:
        return None
    if inst.host_id != host.id or _settled_otherwise(tx, inst, host, now):
        return None
    if inst.state is not InstanceState.Orphaned:
        if (inst.state, Action.host_lost) not in INSTANCE_TRANSITIONS:
            return None
        inst = tx.instances.transition(
            inst.id, inst.state, next_state(inst.state, Action.host_lost), now=now
        )
    return reschedule(tx, inst, host, now, "fenced")


def _due(host: Host, now: datetime, margin: timedelta) -> bool:
    """Down, and its last lease (plus the margin) is over. A host never granted a lease is
    left alone: nothing proves its node manager stopped its VMs."""
    return not host.up and host.lease_expires is not None and now >= host.lease_expires + margin


def _settled_otherwise(tx: Transaction, inst: Instance, host: Host, now: datetime) -> bool:
    """An instance of a lost or fenced host that is not to be started again: one lost (or
    fenced) while migrating is left alone; one lost while shutting down or being destroyed is
    removed. What it was doing is its state, or, once Orphaned, what its history says."""
    orphan = inst.state is InstanceState.Orphaned
    doing = _lost_from(tx, inst) if orphan else inst.state.name
    if doing in _LEAVE:
        return True
    if doing in _REMOVE:
        tx.instances.remove(inst.id, inst.state)
        why = (
            f"lost with {host.name} while {doing}"
            if orphan
            else f"stopped by {host.name}'s self-fence"
        )
        tx.events.add(inst.id, "removed", why, now=now)
        return True
    return False


def _lost_from(tx: Transaction, inst: Instance) -> str | None:
    for event in reversed(tx.events.list(inst.id, limit=20)):
        if event.kind == "hostLost":
            match = _LOST_FROM.search(event.message)
            return match.group(1) if match else None
    return None
