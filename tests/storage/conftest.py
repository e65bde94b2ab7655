"""The ``backend`` fixture: one store per implementation, emptied before every test.

``backend`` is parametrised over the in-memory fake, SQLite (a temporary file), PostgreSQL and
MariaDB (real servers from ``tests/fixtures/dbservers.py``). Each SQL database is created and
migrated once per module and emptied (rows deleted, id counters kept) before each test, which
keeps the suite fast; tests that need a brand-new database use ``fresh_database``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tashi.storage.contract import Store
from tashi.storage.memory import MemoryStore
from tashi.storage.sql import SqlStore, make_engine, upgrade
from tashi.storage.sql.tables import DELETE_ORDER
from tests.fixtures.dbservers import server_for

KINDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
SQL_KINDS = [p for p in KINDS if p.values[0] != "memory"]


@dataclass
class Backend:
    """A store under test, and how to reopen it the way a restarted cluster manager would."""

    kind: str
    store: Store
    url: str | None = None  # SQL kinds only

    def reopen(self) -> Store:
        """Close the store and open a new one on the same data (memory: the same store)."""
        if self.url is None:
            return self.store
        self.store.close()
        self.store = SqlStore(make_engine(self.url))
        return self.store

    @property
    def engine(self) -> Engine:
        assert isinstance(self.store, SqlStore), "only SQL backends have an engine"
        return self.store.engine


@pytest.fixture(scope="module", params=KINDS)
def migrated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str | None]]:
    """(kind, URL of a migrated database for this module); memory has no URL."""
    kind: str = request.param
    if kind == "memory":
        yield kind, None
        return
    if kind == "sqlite":
        path: Path = tmp_path_factory.mktemp("store") / "tashi.sqlite"
        upgrade(f"sqlite:///{path}")
        yield kind, f"sqlite:///{path}"
        return
    server = server_for(request, kind)
    name = f"store_{secrets.token_hex(6)}"
    url = server.create_database(name)
    upgrade(url)
    yield kind, url
    server.drop_database(name)


@pytest.fixture
def backend(migrated: tuple[str, str | None]) -> Iterator[Backend]:
    kind, url = migrated
    if url is None:
        yield Backend(kind, MemoryStore())
        return
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in DELETE_ORDER:
            conn.execute(sa.delete(table))
    found = Backend(kind, SqlStore(engine), url)
    yield found
    found.store.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store
