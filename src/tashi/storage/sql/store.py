"""``SqlStore``: the real ``Store`` of ``storage/contract.py``, one database transaction per unit.

``transaction(write=...)`` checks a connection out of the engine's pool (``engine.py``), begins
(on SQLite a write unit starts with ``BEGIN IMMEDIATE``), hands out the seven repositories
(``instances.py``, ``hosts.py``, ``accounts.py``, ``events.py``, ``addresses.py``) bound to it,
and commits when the block ends or rolls everything back when it raises. ``open_store`` is what
the cluster manager calls at start: engine, migrations (``migrate.py``), store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, RootTransaction

from tashi.config.clustermanager import SqlSettings
from tashi.storage.contract import Store
from tashi.storage.sql.accounts import SqlAccessKeys, SqlTokens, SqlUsers
from tashi.storage.sql.addresses import SqlAddresses
from tashi.storage.sql.db import Db, translate
from tashi.storage.sql.engine import WRITE_OPTION, engine_from_settings
from tashi.storage.sql.events import SqlEvents
from tashi.storage.sql.hosts import SqlHosts, SqlNetworks
from tashi.storage.sql.instances import SqlInstances
from tashi.storage.sql.keypairs import SqlKeyPairs, SqlTags
from tashi.storage.sql.migrate import upgrade
from tashi.storage.sql.secgroups import SqlSecurityGroups
from tashi.storage.sql.tables import (
    image_tags,
    key_pair_tags,
    security_group_tags,
    snapshot_tags,
    volume_tags,
)
from tashi.storage.sql.volumes import SqlSnapshots, SqlVolumes

log = logging.getLogger(__name__)


class SqlTransaction:
    """The repositories of one unit of work, all on the same connection and transaction."""

    def __init__(self, db: Db) -> None:
        self.instances = SqlInstances(db)
        self.hosts = SqlHosts(db)
        self.networks = SqlNetworks(db)
        self.users = SqlUsers(db)
        self.tokens = SqlTokens(db)
        self.access_keys = SqlAccessKeys(db)
        self.key_pairs = SqlKeyPairs(db)
        self.key_pair_tags = SqlTags(db, key_pair_tags, "key_pair_id")
        self.image_tags = SqlTags(db, image_tags, "image")
        self.volumes = SqlVolumes(db)
        self.snapshots = SqlSnapshots(db)
        self.volume_tags = SqlTags(db, volume_tags, "volume_id", "volume")
        self.snapshot_tags = SqlTags(db, snapshot_tags, "snapshot_id", "snapshot")
        self.security_groups = SqlSecurityGroups(db)
        self.security_group_tags = SqlTags(db, security_group_tags, "group_id", "security group")
        self.events = SqlEvents(db)
        self.addresses = SqlAddresses(db)


class SqlStore:
    """The store over a SQLAlchemy engine whose schema ``upgrade`` has brought to head.

    Thread-safe: each transaction has its own pooled connection. A transaction that fails on a
    deadlock or lock timeout raises ``BackendFailure``; the caller may run the unit again."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.max_writers = 1 if engine.dialect.name == "sqlite" else engine.pool.size()  # type: ignore[attr-defined]

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[SqlTransaction]:
        try:
            conn = self.engine.connect()
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc) from exc
        with conn:
            try:
                trans = conn.execution_options(**{WRITE_OPTION: write}).begin()
            except sa_exc.SQLAlchemyError as exc:
                raise translate(exc) from exc
            try:
                yield SqlTransaction(Db(conn))
            except BaseException:
                _rollback(trans)
                raise
            try:
                trans.commit()
            except sa_exc.SQLAlchemyError as exc:
                raise translate(exc) from exc

    def close(self) -> None:
        """Close every pooled connection (transactions in progress keep theirs until done)."""
        self.engine.dispose()


if TYPE_CHECKING:  # mypy proves here that the SQL store keeps the contract
    _CONFORMS: type[Store] = SqlStore


def open_store(sql: SqlSettings, state_dir: Path) -> SqlStore:
    """The store the cluster manager runs on: ``[SQL]`` settings, schema upgraded to head."""
    engine = engine_from_settings(sql, state_dir)
    upgrade(engine)
    return SqlStore(engine)


def _rollback(trans: RootTransaction) -> None:
    # The error that got us here is the one to report; a failed rollback (the connection is
    # gone) only means the server discards the transaction itself, so it is logged, not raised.
    try:
        trans.rollback()
    except sa_exc.SQLAlchemyError:
        log.warning("rollback failed; the connection is discarded", exc_info=True)
