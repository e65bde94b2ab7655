"""Alembic migrations (``storage/sql/migrate.py``) on brand-new SQLite, PostgreSQL and MariaDB
databases: they create the schema, running them again changes nothing, and what they create is
exactly ``tables.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import tashi
from tashi.config.settings import SqlSettings
from tashi.domain.errors import BackendFailure
from tashi.domain.models import Role
from tashi.storage.sql import current_revision, head_revision, make_engine, open_store, upgrade
from tashi.storage.sql.migrate import MIGRATIONS
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
        assert current_revision(engine) == head_revision() == "0001"
        tables = set(sa.inspect(engine).get_table_names())
        assert tables == set(metadata.tables) | {"alembic_version"}
        with engine.begin() as conn:
            conn.execute(
                sa.insert(metadata.tables["users"]),
                {"name": "kept", "role": Role.user.value, "priority": 0, "password_hash": "h",
                 "created_at": NOW},
            )  # fmt: skip
        upgrade(url)  # again, through a URL this time
        assert current_revision(url) == "0001"
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
