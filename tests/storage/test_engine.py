"""The SQL engine (``storage/sql/engine.py``) and what the store does with it beyond the contract:
URLs from ``[SQL]`` settings, SQLite's locking discipline, errors from the database, the two
queries of ``find`` and the indexes behind each filter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tashi.domain.errors import BackendFailure, InvalidInput
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, InstanceSpec, NicConfig, Role
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceFilter
from tashi.storage.sql import SqlStore, database_url, make_engine, upgrade
from tashi.storage.sql.instances import _COLUMNS, _conditions
from tashi.storage.sql.tables import instances as t_instances
from tests.fixtures.dbservers import FreshDatabase

NOW = datetime(2024, 1, 1, tzinfo=UTC)
SERVER_KINDS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


# --- URLs ------------------------------------------------------------------------------------


def test_an_empty_uri_means_sqlite_in_the_state_directory() -> None:
    url = database_url("", "ignored", Path("/var/lib/tashi"))
    assert (
        url.render_as_string(hide_password=False)
        == "sqlite+pysqlite:////var/lib/tashi/tashi.sqlite"
    )


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:////srv/t.db", "sqlite+pysqlite:////srv/t.db"),
        ("postgresql://tashi@db:5433/cm", "postgresql+psycopg://tashi:s3cret@db:5433/cm"),
        ("postgres://tashi@db/cm", "postgresql+psycopg://tashi:s3cret@db/cm"),
        ("postgresql+psycopg://tashi@db/cm", "postgresql+psycopg://tashi:s3cret@db/cm"),
        ("mysql://tashi@db/cm", "mysql+pymysql://tashi:s3cret@db/cm?charset=utf8mb4"),
        ("mariadb://tashi@db:3307/cm", "mysql+pymysql://tashi:s3cret@db:3307/cm?charset=utf8mb4"),
    ],
)
def test_uris_map_to_drivers_and_get_the_password_injected(uri: str, expected: str) -> None:
    url = database_url(uri, "s3cret", Path("/unused"))
    assert url.render_as_string(hide_password=False) == expected
    assert "s3cret" not in str(url) and "s3cret" not in repr(url)


def test_the_settings_password_replaces_one_in_the_uri_and_no_password_keeps_it() -> None:
    assert database_url("mysql://u:old@h/d", "new", Path()).password == "new"
    assert database_url("mysql://u:old@h/d", "", Path()).password == "old"


@pytest.mark.parametrize("uri", ["oracle://u:pw@h/d", "not a uri", "pg:///u:pw@"])
def test_unsupported_uris_are_invalid_input_without_echoing_a_password(uri: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        database_url(uri, "", Path())
    assert "pw" not in caught.value.message


def test_an_in_memory_sqlite_database_is_refused() -> None:
    with pytest.raises(InvalidInput, match="file"):
        make_engine(database_url("sqlite://", "", Path()))


# --- SQLite ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/tashi.sqlite")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_sqlite_connections_use_wal_normal_sync_foreign_keys_and_a_busy_timeout(
    sqlite_engine: Engine,
) -> None:
    with sqlite_engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 1000


def test_concurrent_read_then_write_transactions_on_sqlite_never_fail(
    sqlite_engine: Engine,
) -> None:
    """Each unit reads, then writes. With a deferred BEGIN, two of them holding read locks
    would deadlock on the upgrade and SQLite fails one at once ("database is locked");
    BEGIN IMMEDIATE makes them queue instead."""
    store = SqlStore(sqlite_engine)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        barrier.wait()
        for k in range(15):
            try:
                with store.transaction() as tx:
                    tx.users.list()
                    tx.users.add(
                        f"u{n}-{k}", role=Role.user, priority=0, password_hash="h", now=NOW
                    )
            except BackendFailure as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with store.transaction(write=False) as tx:
        assert len(tx.users.list()) == 60


def test_a_read_transaction_on_sqlite_does_not_hold_up_a_writer(sqlite_engine: Engine) -> None:
    store = SqlStore(sqlite_engine)
    done = threading.Event()

    def write() -> None:
        with store.transaction() as tx:
            tx.users.add("writer", role=Role.user, priority=0, password_hash="h", now=NOW)
        done.set()

    with store.transaction(write=False) as reader:
        assert reader.users.list() == []
        writer = threading.Thread(target=write)
        writer.start()
        assert done.wait(timeout=5), "the writer waited for the reader to finish"
        assert reader.users.list() == []  # the reader keeps its snapshot
    writer.join()


def test_an_unmigrated_database_fails_as_backend_failure(tmp_path: Path) -> None:
    store = SqlStore(make_engine(f"sqlite:///{tmp_path}/empty.sqlite"))
    try:
        with pytest.raises(BackendFailure, match="no such table"), store.transaction() as tx:
            tx.users.list()
    finally:
        store.close()


def test_find_loads_a_page_in_two_queries_whatever_its_size(sqlite_engine: Engine) -> None:
    store = SqlStore(sqlite_engine)
    with store.transaction() as tx:
        owner = tx.users.add("alice", role=Role.user, priority=0, password_hash="h", now=NOW).id
        tx.networks.add(NetworkId(1), "n1")
        for n in range(60):
            nics = tuple(NicConfig(NetworkId(1), f"52:54:00:00:{n:02x}:{k:02x}") for k in range(2))
            spec = InstanceSpec(f"vm{n}", 1, 64, (DiskConfig("base.qcow2"),), nics)
            tx.instances.add(owner, spec, unique_name=False, now=NOW)
    statements: list[str] = []
    sa.event.listen(sqlite_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with store.transaction(write=False) as tx:
        page = tx.instances.find(InstanceFilter(user_id=owner, limit=50))
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(page) == 50 and all(len(i.nics) == 2 for i in page)
    assert len(selects) == 2, selects


def query_plan(engine: Engine, where: InstanceFilter) -> str:
    """SQLite's plan for the instance query of ``find(where)``."""
    query = sa.select(*_COLUMNS).where(*_conditions(where)).order_by(t_instances.c.id)
    if where.limit is not None:
        query = query.limit(where.limit)
    sql = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


@pytest.mark.parametrize(
    ("where", "index"),
    [
        (InstanceFilter(states=[InstanceState.Running]), "ix_instances_state"),
        (InstanceFilter(host_id=HostId(1)), "ix_instances_host"),
        (InstanceFilter(name="web"), "ix_instances_name"),
        (InstanceFilter(name_prefix="web"), "ix_instances_name"),
        (InstanceFilter(user_id=UserId(1), after_id=InstanceId(5), limit=10), "ix_instances_user"),
    ],
)
def test_each_instance_filter_is_served_by_an_index(
    sqlite_engine: Engine, where: InstanceFilter, index: str
) -> None:
    plan = query_plan(sqlite_engine, where)
    assert f"INDEX {index}" in plan, plan


def test_a_page_of_one_owner_needs_no_sort(sqlite_engine: Engine) -> None:
    plan = query_plan(sqlite_engine, InstanceFilter(user_id=UserId(1), limit=10))
    assert "TEMP B-TREE" not in plan, plan


# --- database servers ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_a_wrong_password_is_a_backend_failure_that_does_not_show_the_password(
    kind: str, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    db = fresh_database(kind)
    url = database_url(db.uri, "wrong-pass-word", Path())
    store = SqlStore(make_engine(url))
    try:
        with pytest.raises(BackendFailure) as caught, store.transaction() as tx:
            tx.users.list()
        assert "wrong-pass-word" not in caught.value.message
        assert db.password not in caught.value.message
    finally:
        store.close()


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_the_test_servers_log_in_a_real_user_with_the_settings_password(
    kind: str, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    db = fresh_database(kind)
    assert db.password and db.password not in db.uri
    engine = make_engine(database_url(db.uri, db.password, Path()))
    try:
        upgrade(engine)
        with SqlStore(engine).transaction() as tx:
            assert tx.users.list() == []
    finally:
        engine.dispose()
    no_password = make_engine(database_url(db.uri, "", Path()))
    try:
        with pytest.raises(BackendFailure):
            upgrade(no_password)
    finally:
        no_password.dispose()
