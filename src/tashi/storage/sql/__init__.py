"""The real store: SQLAlchemy Core over SQLite (default), PostgreSQL or MariaDB.

``engine.py`` (URLs, connection settings) -> ``migrate.py`` + ``migrations/`` (the schema, by
Alembic) -> ``tables.py`` (its shape for queries) -> ``db.py`` (the one error seam) ->
``instances.py``, ``hosts.py``, ``accounts.py``, ``events.py`` (the repositories) ->
``store.py`` (``SqlStore``).
The cluster manager needs only ``open_store``; see docs/adr/0002-state-store.md for the why.
"""

from tashi.storage.sql.engine import database_url, engine_from_settings, make_engine
from tashi.storage.sql.migrate import current_revision, head_revision, upgrade
from tashi.storage.sql.store import SqlStore, SqlTransaction, open_store

__all__ = [
    "SqlStore",
    "SqlTransaction",
    "current_revision",
    "database_url",
    "engine_from_settings",
    "head_revision",
    "make_engine",
    "open_store",
    "upgrade",
]
