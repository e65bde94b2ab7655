"""History retention: the instance history (``instance_events``) stays bounded.

Every event is kept for ``[ClusterManager] historyLifetime`` seconds (30 days) and each instance
keeps only its newest ``historyPerInstance`` events (100): an instance that runs for years and
is migrated, suspended and fenced again and again never grows the table without end, nor do the
many short-lived ones a busy cluster makes (their history outlives them). ``purge`` is one pass,
which ``tashi-cm`` runs every ``INTERVAL`` seconds as a supervised task (``daemons/cm.py``),
through the store's ``purge_before`` and ``purge_beyond`` (``storage/contract.py``), each in a
write of its own so that a first purge of a large table does not hold one long transaction.

What the cluster manager itself reads back from history bounds the options from below: HA
settles an Orphaned instance by the ``hostLost`` event among its newest 20 (``ha.py``), hence
``historyPerInstance`` >= 20; node reports stop a VM of a removed instance only while the
instance has history left (``nodereports.py``), so a VM reported after ``historyLifetime`` is
adopted, as one the store never knew.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from tashi.clustermanager.database import Database
from tashi.domain.clock import Clock

log = logging.getLogger(__name__)


class HistoryRetention:
    INTERVAL = 3600.0  # seconds between two purges

    def __init__(self, db: Database, clock: Clock, lifetime: float, per_instance: int) -> None:
        self._db = db
        self._clock = clock
        self.lifetime = timedelta(seconds=lifetime)
        self.per_instance = per_instance

    async def purge(self) -> int:
        """One pass: delete the events older than the lifetime, then each instance's beyond
        its newest ``per_instance``; how many went."""
        cut = self._clock.now() - self.lifetime
        old = await self._db.write(lambda tx: tx.events.purge_before(cut))
        over = await self._db.write(lambda tx: tx.events.purge_beyond(self.per_instance))
        if old or over:
            log.info(
                "history purged: %d event(s) from before %s, %d beyond an instance's newest %d",
                old,
                cut.isoformat(timespec="seconds"),
                over,
                self.per_instance,
            )
        return old + over
