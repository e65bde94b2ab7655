"""Alembic migrations (``storage/sql/migrate.py``) on brand-new SQLite, PostgreSQL and MariaDB
databases: they create the schema, running them again changes nothing, what they create is
exactly ``tables.py``, and a database made by an older revision keeps its rows when it is
upgraded (and when 0002 is rolled back).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import tashi
from tashi.config.clustermanager import SqlSettings
from tashi.domain import secgroups as sg
from tashi.domain.errors import BackendFailure
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, Host, Instance, InstanceSpec, NicConfig, Role
from tashi.domain.states import HostState, InstanceState
from tashi.storage.sql import (
    SqlStore,
    current_revision,
    head_revision,
    make_engine,
    open_store,
    upgrade,
)
from tashi.storage.sql.migrate import MIGRATIONS, alembic_config
from tashi.storage.sql.tables import metadata
from tests.fixtures.dbservers import FreshDatabase

KINDS = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
NOW = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_creates_the_schema_and_a_second_run_changes_nothing(
    kind: str, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    url = fresh_database(kind).url
    engine = make_engine(url)
    try:
        assert current_revision(engine) is None
        assert sa.inspect(engine).get_table_names() == []
        upgrade(engine)
        assert current_revision(engine) == head_revision() == "0010"
        tables = set(sa.inspect(engine).get_table_names())
        assert tables == set(metadata.tables) | {"alembic_version"}
        with engine.begin() as conn:
            conn.execute(
                sa.insert(metadata.tables["users"]),
                {"name": "kept", "role": Role.user.value, "priority": 0, "password_hash": "h",
                 "created_at": NOW},
            )  # fmt: skip
        upgrade(url)  # again, through a URL this time
        assert current_revision(url) == "0010"
        with engine.connect() as conn:
            names = conn.execute(sa.select(metadata.tables["users"].c.name)).scalars().all()
        assert names == ["kept"]
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_the_migrated_schema_is_exactly_tables_py(
    kind: str, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    engine = make_engine(fresh_database(kind).url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_migrations_run_from_the_package_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (MIGRATIONS / "env.py").is_file() and (MIGRATIONS / "script.py.mako").is_file()
    assert MIGRATIONS.is_relative_to(Path(tashi.__file__).parent)
    monkeypatch.chdir(tmp_path)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    store = open_store(SqlSettings(uri=""), state_dir)
    try:
        with store.transaction() as tx:
            tx.users.add("admin", role=Role.admin, priority=0, password_hash="h", now=NOW)
        assert current_revision(store.engine) == head_revision()
    finally:
        store.close()
    assert (state_dir / "tashi.sqlite").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # nothing written to cwd


def test_a_database_that_cannot_be_opened_is_a_backend_failure(tmp_path: Path) -> None:
    with pytest.raises(BackendFailure, match="database failure"):
        upgrade(f"sqlite:///{tmp_path}/missing-dir/tashi.sqlite")


def _fill_at_0001(conn: sa.Connection) -> None:
    """Rows in every table of revision 0001, written as 0001 knew them (no later column).
    The database is new, so the ids it gives are 1, 2, ..."""
    t = metadata.tables
    conn.execute(
        sa.insert(t["users"]),
        [{"name": "alice", "role": "user", "priority": 0, "password_hash": "h1",
          "created_at": NOW},
         {"name": "node1", "role": "node", "priority": 0, "password_hash": "h2",
          "created_at": NOW}],
    )  # fmt: skip
    conn.execute(sa.insert(t["networks"]), {"id": 10, "name": "net10"})
    conn.execute(
        sa.insert(t["hosts"]),
        {"name": "node1", "up": True, "decayed": False, "state": HostState.Normal.value,
         "memory": 4096, "cores": 4, "cpu_speed": 2400, "version": "1", "notes": "rack 4",
         "config": {"k": "v"}, "last_heartbeat": NOW, "load": 0.5, "created_at": NOW},
    )  # fmt: skip
    conn.execute(sa.insert(t["host_reservations"]), {"host_id": 1, "user_id": 1})
    conn.execute(
        sa.insert(t["instances"]),
        {"name": "web", "name_key": "web", "user_id": 1,
         "state": InstanceState.Running.value, "host_id": 1, "vm_id": 7, "cores": 2,
         "memory": 512, "cpu_share": 1024, "disks": [{"uri": "base.qcow2", "persistent": False}],
         "hints": {"a": "b"}, "group_name": None, "reason": None, "created_at": NOW,
         "state_since": NOW},
    )  # fmt: skip
    conn.execute(
        sa.insert(t["nics"]),
        {"instance_id": 1, "idx": 0, "network_id": 10, "mac": "52:54:00:00:00:01",
         "ip": "10.0.0.1"},
    )  # fmt: skip
    conn.execute(sa.insert(t["tokens"]), {"token_hash": "t1", "user_id": 1, "expires": NOW})


EXPECTED_HOST = Host(
    id=HostId(1), name="node1", up=True, state=HostState.Normal, memory=4096, cores=4,
    cpu_speed=2400, version="1", notes="rack 4", reserved=(UserId(1),), config={"k": "v"},
    last_heartbeat=NOW, load=0.5, lease_expires=None,
)  # fmt: skip
EXPECTED_INSTANCE = Instance(
    id=InstanceId(1), name="web", user_id=UserId(1), state=InstanceState.Running, cores=2,
    memory=512, disks=(DiskConfig("base.qcow2"),),
    nics=(NicConfig(NetworkId(10), "52:54:00:00:00:01", "10.0.0.1"),), hints={"a": "b"},
    host_id=HostId(1), vm_id=7, created_at=NOW, state_since=NOW,
)  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_a_database_made_at_0001_keeps_its_rows_through_upgrade_and_downgrade(
    kind: str, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    url = fresh_database(kind).url
    upgrade(url, "0001")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _fill_at_0001(conn)
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        store = SqlStore(engine)
        with store.transaction() as tx:
            assert tx.hosts.list() == [EXPECTED_HOST]
            assert tx.instances.find() == [EXPECTED_INSTANCE]
            assert [u.name for u in tx.users.list()] == ["alice", "node1"]
            assert tx.tokens.purge_expired(NOW) == 1  # the old token was there to purge
            added = tx.instances.add(UserId(1), _spec("db"), unique_name=True, now=NOW)
            assert added.id == 2  # the id counter carried on past the old rows
            tx.hosts.set_link(
                HostId(1), endpoint="http://n1", secret="s", user_id=UserId(2), now=NOW
            )
            tx.events.add(InstanceId(1), "state", "Running", now=NOW)
        with engine.begin() as conn:  # 0002 rolled back: its tables go, the older rows stay
            command.downgrade(alembic_config(conn), "0001")
        assert current_revision(engine) == "0001"
        names = set(sa.inspect(engine).get_table_names())
        assert "node_links" not in names and "instance_events" not in names
        assert "addresses" not in names  # 0003 went first
        columns = {c["name"] for c in sa.inspect(engine).get_columns("hosts")}
        assert "lease_expires" not in columns
        with engine.connect() as conn:
            t = metadata.tables
            # not cascaded away, as a rebuilt ``hosts`` table would have done on SQLite
            assert conn.execute(sa.select(t["host_reservations"].c.user_id)).all() == [(1,)]
            assert conn.execute(sa.select(sa.func.count()).select_from(t["hosts"])).scalar() == 1
            assert conn.execute(sa.select(sa.func.count()).select_from(t["nics"])).scalar() == 2
        upgrade(engine)  # and forward again
        with store.transaction(write=False) as tx:
            assert tx.hosts.list() == [EXPECTED_HOST]
            assert tx.hosts.links() == {}
            assert tx.events.list(InstanceId(1)) == []
    finally:
        engine.dispose()


def _spec(name: str) -> InstanceSpec:
    nic = NicConfig(NetworkId(10), "52:54:00:00:00:02")
    return InstanceSpec(name=name, cores=1, memory=256, disks=(DiskConfig("b.qcow2"),), nics=(nic,))


@pytest.mark.parametrize("kind", KINDS)
def test_0009_gives_every_group_aws_default_outbound_rule_and_keeps_the_inbound_ones(
    kind: str, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    url = fresh_database(kind).url
    upgrade(url, "0008")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            t = metadata.tables
            conn.execute(
                sa.insert(t["users"]),
                {"name": "alice", "role": "user", "priority": 0, "password_hash": "h",
                 "created_at": NOW},
            )  # fmt: skip
            conn.execute(
                sa.insert(t["security_groups"]),
                [{"id": f"sg-{n:017x}", "user_id": 1, "name": f"g{n}", "description": "",
                  "created_at": NOW} for n in (1, 2)],
            )  # fmt: skip
            conn.execute(
                sa.insert(t["security_group_rules"]).values(
                    group_id="sg-00000000000000001",
                    rule_key="tcp|22|22|10.0.0.0/8|",
                    protocol="tcp",
                    from_port=22,
                    to_port=22,
                    cidr="10.0.0.0/8",
                    peer_id=None,
                    description="ssh",
                )
            )
        upgrade(engine)
        store = SqlStore(engine)
        with store.transaction(write=False) as tx:
            rules = tx.security_groups.rules()
        ssh = sg.Rule("tcp", 22, 22, cidr="10.0.0.0/8", description="ssh")
        assert rules == {
            "sg-00000000000000001": [ssh, sg.DEFAULT_EGRESS],
            "sg-00000000000000002": [sg.DEFAULT_EGRESS],
        }
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0008")
        assert current_revision(engine) == "0008"
        with engine.connect() as conn:
            kept = conn.execute(sa.select(sa.text("rule_key FROM security_group_rules"))).all()
        assert kept == [("tcp|22|22|10.0.0.0/8|",)]
    finally:
        engine.dispose()
