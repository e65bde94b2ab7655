"""Host liveness: a host silent for ``expireHostTime`` is checked, then marked down.

Each pass looks at the hosts that are up; one whose last heartbeat is older than
``expireHostTime`` gets a direct check of its node manager. If that answers, the host was only
slow and stays up (and is not checked again for ``expireHostTime``; its last heartbeat stays the
time of its last report); if not, the host goes down and every instance on it becomes Orphaned
(``host_lost``), each with a compare-and-swap and a line in its history. A host comes back up
with its next registration or heartbeat, and reconciliation then re-attaches what still runs.

Except an instance the host was migrating away (MigratePrep, MigrateTrans): its VM may already
be whole on the target, the only copy, so it keeps its state, and with it the target's copy
(``nodereports`` keeps the VM of an instance in migration on its target). The settling of
migrations asks both hosts (``migration.Migrations.settle``) and, once the source is proven
lost, finishes the VM on the target or starts it again elsewhere.

A cluster manager that has just started counts silence from its own start, not from the last
heartbeat it has on record: while it was away no host could reach it, and each gets a whole
``expireHostTime`` to report before it is checked.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.domain.clock import Clock
from tashi.domain.errors import StateConflict
from tashi.domain.ids import HostId
from tashi.domain.models import Host
from tashi.domain.states import ON_HOST, Action, InstanceState, next_state
from tashi.storage.contract import InstanceFilter, Transaction

log = logging.getLogger(__name__)

#: What a host that stops answering orphans: all it may run but what it is migrating away.
_ORPHANED_BY_LOSS = sorted(ON_HOST - {InstanceState.MigratePrep, InstanceState.MigrateTrans})


class Liveness:
    def __init__(self, db: Database, clock: Clock, nodes: NodeGateway, expire: float) -> None:
        self._db = db
        self._clock = clock
        self._nodes = nodes
        self._expire = timedelta(seconds=expire)
        self._since = clock.now()
        self._answered: dict[HostId, datetime] = {}  # a silent host's check answered then

    async def check(self) -> list[Host]:
        """One pass; returns the hosts it marked down."""
        now = self._clock.now()
        unheard = now - self._expire  # only those hosts: not every host every pass
        hosts = await self._db.read(lambda tx: tx.hosts.silent(unheard))
        since = self._answered.get
        silent = [h for h in hosts if _silent(h, now, self._expire, since(h.id, self._since))]
        down = []
        for host in silent:
            if await self._nodes.alive(host):
                self._answered[host.id] = now
                continue
            self._answered.pop(host.id, None)
            marked = await self._db.write(functools.partial(_mark_down, host=host, now=now))
            if marked is None:
                log.info("host %s reported while it was checked; it stays up", host.name)
                continue
            down.append(marked)
            log.warning("host %s stopped answering; marked down, its instances Orphaned", host.name)
        return down


def _silent(host: Host, now: datetime, expire: timedelta, since: datetime) -> bool:
    last = host.last_heartbeat
    return now - (since if last is None or last < since else last) > expire


def _mark_down(tx: Transaction, *, host: Host, now: datetime) -> Host | None:
    """The host down and its instances Orphaned, unless it reported (or was marked down)
    since ``host`` was read: the check of its node manager takes time, and a node manager
    that restarted meanwhile has registered again. ``None`` then."""
    current = tx.hosts.lock(host.id)
    if not current.up or current.last_heartbeat != host.last_heartbeat:
        return None
    updated = tx.hosts.update(host.id, up=False, decayed=False)
    for inst in tx.instances.find(InstanceFilter(host_id=host.id, states=_ORPHANED_BY_LOSS)):
        target = next_state(inst.state, Action.host_lost)
        try:
            tx.instances.transition(inst.id, inst.state, target, now=now)
        except StateConflict:  # pragma: no cover - same transaction, cannot race
            continue
        tx.events.add(
            inst.id,
            "hostLost",
            f"{host.name} stopped answering; {inst.state.name} -> {InstanceState.Orphaned.name}",
            now=now,
        )
    return updated
