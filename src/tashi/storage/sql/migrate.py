"""Schema migrations, run from code: ``upgrade`` at cluster manager start, ``current_revision``
for diagnostics.

The Alembic environment lives in the package (``migrations/``, found next to this file, never
relative to the working directory), so an installed Tashi migrates its database without an
``alembic.ini``. Revisions are written by hand in ``migrations/versions``; ``tables.py`` is the
shape they must produce, which ``tests/storage/test_migrations.py`` checks. For developers,
``alembic -c src/tashi/storage/sql/alembic.ini revision -m "..."`` starts a new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine

from tashi.storage.sql.db import translate
from tashi.storage.sql.engine import make_engine

MIGRATIONS = Path(__file__).resolve().with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for Tashi's migrations, run on ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(target: Engine | URL | str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (creating it in an empty database). A no-op when it
    is there already. Database errors surface as ``BackendFailure``."""
    with _engine(target) as engine:
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), revision)
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc) from exc


def current_revision(target: Engine | URL | str) -> str | None:
    """The revision the database is at (``None``: no Tashi schema in it)."""
    with _engine(target) as engine:
        try:
            with engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc) from exc


def head_revision() -> str:
    """The newest revision this version of Tashi knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


@contextmanager
def _engine(target: Engine | URL | str) -> Iterator[Engine]:
    """The caller's engine as is, or a short-lived one for a URL (disposed afterwards)."""
    if isinstance(target, Engine):
        yield target
        return
    engine = make_engine(target, pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()
