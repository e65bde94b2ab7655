"""The cluster manager's connection pool is sized for its database threads (issue 25): under
steady load, with every reader and writer thread busy, no request opens a connection of its own
(an overflow connection is closed again when given back, so a pool smaller than the threads
opened and closed connections all the time: about 11 a second on PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tashi.clustermanager.database import Database
from tashi.config.clustermanager import SqlSettings
from tashi.storage.sql.store import open_store
from tests.fixtures.dbservers import FreshDatabase

POOL = 4  # [SQL] poolSize: reader threads, and as many writers where the store takes them
CONCURRENT = 32  # requests at once: more than the threads, so every thread is busy
ROUNDS = 20


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_busy_cluster_manager_opens_no_connections(
    kind: str, fresh_database: Callable[[str], FreshDatabase], tmp_path: Path
) -> None:
    fresh = fresh_database(kind)
    settings = SqlSettings(uri=fresh.uri, password=fresh.password, pool_size=POOL)
    store = open_store(settings, tmp_path)
    opened: list[object] = []
    sa.event.listen(store.engine, "connect", lambda conn, _: opened.append(conn))
    db = Database(store, workers=POOL)

    async def load() -> None:
        for _ in range(ROUNDS):
            work = [db.read(lambda tx: tx.instances.count()) for _ in range(CONCURRENT)]
            work += [db.write(lambda tx: tx.instances.count()) for _ in range(CONCURRENT // 4)]
            await asyncio.gather(*work)

    try:
        asyncio.run(load())  # every thread has its connection now
        warm = len(opened)
        asyncio.run(load())
        assert len(opened) == warm, f"{len(opened) - warm} connections opened under load"
        assert warm <= 2 * POOL
    finally:
        db.close()
        store.close()
