"""The instance history over SQL: an append-only log in ``instance_events``.

Implements ``InstanceEventRepository`` of ``storage/contract.py`` on the ``instance_events``
table of ``tables.py``. The table has no foreign key to ``instances`` (history outlives the
instance); ids come from the database and are never reused, so id order is the order events
were recorded. ``list`` reads the newest events backwards through ``(instance_id, id)`` and
turns them round; ``purge_before`` deletes through the index on ``at``, ``purge_beyond``
through ``(instance_id, id)``: per instance over the count, the id of its oldest event kept
(found by OFFSET, which SQLite, PostgreSQL and MariaDB all have, unlike a DELETE that reads its
own table), then one range delete. Errors pass through ``db.py``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from tashi.domain.ids import InstanceId
from tashi.domain.models import InstanceEvent
from tashi.storage.contract import EVENT_KIND_MAX
from tashi.storage.shared import bounded, check_limit, event_message
from tashi.storage.sql.db import Db
from tashi.storage.sql.tables import instance_events as t_events

_COLUMNS = (
    t_events.c.id,
    t_events.c.instance_id,
    t_events.c.at,
    t_events.c.kind,
    t_events.c.message,
)


class SqlEvents:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(
        self, instance_id: InstanceId, kind: str, message: str, *, now: datetime
    ) -> InstanceEvent:
        bounded("an event kind", kind, EVENT_KIND_MAX)
        kept = event_message(message)
        row = {"instance_id": instance_id, "at": now, "kind": kind, "message": kept}
        event_id = self._db.insert(sa.insert(t_events), row)
        return InstanceEvent(event_id, instance_id, now, kind, kept)

    def list(
        self, instance_id: InstanceId, *, limit: int = 100, after_id: int | None = None
    ) -> list[InstanceEvent]:
        query = sa.select(*_COLUMNS).where(t_events.c.instance_id == instance_id)
        if after_id is not None:
            query = query.where(t_events.c.id > after_id).order_by(t_events.c.id)
            rows = self._db.execute(query.limit(check_limit(limit))).all()
            return [InstanceEvent(*row) for row in rows]
        query = query.order_by(t_events.c.id.desc()).limit(check_limit(limit))
        return [InstanceEvent(*row) for row in reversed(self._db.execute(query).all())]

    def purge_before(self, when: datetime) -> int:
        result = self._db.execute(sa.delete(t_events).where(t_events.c.at < when))
        return int(result.rowcount)

    def purge_beyond(self, per_instance: int) -> int:
        keep = check_limit(per_instance)
        over = (
            sa.select(t_events.c.instance_id)
            .group_by(t_events.c.instance_id)
            .having(sa.func.count() > keep)
        )
        return sum(self._trim(iid, keep) for iid in self._db.execute(over).scalars().all())

    def _trim(self, instance_id: InstanceId, keep: int) -> int:
        """Delete the instance's events older than its newest ``keep``."""
        mine = t_events.c.instance_id == instance_id
        delete = sa.delete(t_events).where(mine)
        if keep:
            oldest_kept = (
                sa.select(t_events.c.id)
                .where(mine)
                .order_by(t_events.c.id.desc())
                .offset(keep - 1)
                .limit(1)
            )
            delete = delete.where(t_events.c.id < self._db.execute(oldest_kept).scalar_one())
        return int(self._db.execute(delete).rowcount)
