"""The Alembic environment: runs Tashi's revisions on the connection ``migrate.upgrade`` hands
over (``config.attributes["connection"]``), or, from the ``alembic`` command line, on a URL
given as ``-x url=...``. Never configures logging: the daemon that migrates owns it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from tashi.storage.sql.engine import make_engine
from tashi.storage.sql.tables import metadata


def _run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database as: alembic -c ... -x url=<database URL> <command>")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            _migrate(conn)
    finally:
        engine.dispose()


def _migrate(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


_run()
