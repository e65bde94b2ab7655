"""Turn ``[SQL]`` settings into a SQLAlchemy engine tuned for the three databases Tashi supports.

``database_url`` maps Tashi's short URIs to SQLAlchemy URLs (driver names, charset) and injects
the password into the ``URL`` object, so it never appears in a string that could be logged.
``make_engine`` builds the engine: SQLite gets WAL, ``synchronous=NORMAL``, foreign keys and a
busy timeout, and takes its write lock at ``BEGIN IMMEDIATE`` (see ``_sqlite_begin``); the
servers get a bounded pool and READ COMMITTED. ``store.py`` uses the engine, ``migrate.py``
creates the schema in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from tashi.config.clustermanager import SqlSettings
from tashi.domain.errors import InvalidInput

SQLITE_FILE = "tashi.sqlite"
SQLITE_BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another writer's commit
WRITE_OPTION = "tashi_write"  # connection execution option read by ``_sqlite_begin``
# Connections a pool opens beyond its size, closed again when given back: a little slack for a
# caller outside the cluster manager's database threads, which the pool is sized for (each
# reader and each writer thread keeps one connection; ``engine_from_settings``).
OVERFLOW = 2

_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def database_url(uri: str, password: str, state_dir: Path) -> URL:
    """The SQLAlchemy URL for ``[SQL] uri`` (empty: ``<state_dir>/tashi.sqlite``).

    ``password`` (``[SQL] password``) replaces any password in the URI."""
    if not uri.strip():
        return URL.create("sqlite+pysqlite", database=str(state_dir / SQLITE_FILE))
    try:
        url = make_url(uri.strip())
    except ArgumentError as exc:
        raise InvalidInput(  # the URI itself is not shown: it may hold a password
            "[SQL] uri is not a database URI; expected sqlite:///path,"
            " postgresql://user@host:port/db or mysql://user@host:port/db"
        ) from exc
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        known = ", ".join(sorted({k for k in _DRIVERS if k != "postgres"}))
        raise InvalidInput(f"[SQL] uri names database {backend!r}; Tashi supports {known}")
    if "+" not in url.drivername or backend == "mariadb":
        url = url.set(drivername=_DRIVERS[backend])
    if url.get_backend_name() == "mysql":
        url = url.update_query_dict({"charset": "utf8mb4"})
    if password and url.get_backend_name() != "sqlite":
        url = url.set(password=password)
    return url


def url_from_settings(sql: SqlSettings, state_dir: Path) -> URL:
    return database_url(sql.uri, sql.password, state_dir)


def make_engine(url: URL | str, *, pool_size: int = 8) -> Engine:
    """An engine for ``url`` with Tashi's connection settings (see the module docstring)."""
    url = make_url(url)
    options: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise InvalidInput("Tashi keeps its state in a SQLite file, not in memory")
        engine = sa.create_engine(url, pool_size=pool_size, max_overflow=OVERFLOW, **options)
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.get_backend_name() == "postgresql":
        # Sessions in UTC: timestamps come back already in the zone the store hands out.
        options["connect_args"] = {"options": "-c timezone=UTC"}
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=OVERFLOW,
        pool_pre_ping=True,  # a restarted server must not cost the next request its connection
        pool_recycle=3600,  # MariaDB closes idle connections after wait_timeout (8 h)
        isolation_level="READ COMMITTED",
        **options,
    )


def engine_from_settings(sql: SqlSettings, state_dir: Path) -> Engine:
    """The cluster manager's engine: a connection kept for each of its ``poolSize`` reader
    threads and as many writer threads (``Database``), so that no request under load opens or
    closes one (issue 25: 16 threads on a pool of 8 opened about 11 connections a second)."""
    return make_engine(url_from_settings(sql, state_dir), pool_size=2 * sql.pool_size)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module: it would BEGIN (deferred) only
    # before the first write, so two transactions that read first could both hold a read lock
    # and then deadlock on the upgrade to a write lock. ``_sqlite_begin`` emits BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock at once (waiting up to busy_timeout for it), so
    # concurrent writers queue instead of failing; a read-only one stays deferred and never
    # blocks anyone under WAL.
    write = conn.get_execution_options().get(WRITE_OPTION, True)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
