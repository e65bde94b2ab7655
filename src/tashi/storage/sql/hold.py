"""One cluster manager per database: the hold ``tashi-cm`` takes before it migrates or serves.

Two cluster managers on one database would each run the liveness checks, HA restarts and
deadlines as if alone, and each keep in memory what the other cannot see (the change feed, the
witnesses' clocks). So ``tashi-cm`` takes the database's hold at start (``take_hold``), before
the migrations, keeps it while it runs, and refuses to start while another process has it:

* **SQLite**: an exclusive ``flock`` on ``<database file>.cm-lock`` beside the database (not on
  the database file, whose readers must not be kept out), which holds the holder's name.
* **PostgreSQL**: ``pg_try_advisory_lock`` on a session of its own (advisory locks belong to one
  database of the server), named by its ``application_name``.
* **MariaDB**: ``GET_LOCK('tashi-cm:<database>', 0)`` on a session of its own (named locks
  belong to the whole server, hence the database in the name).

Each is let go by the kernel or by the server when the process ends, however it ends: a
cluster manager started after a SIGKILL of the previous one takes the hold at once (the server
ends the session when its socket closes). Its host vanishing is noticed by the TCP keepalives
set on the session (PostgreSQL, in about 11 s) or by the session's idle limit (MariaDB,
``wait_timeout`` 30 s; the hold's session is never idle that long while its owner lives).

``take_hold`` waits up to ``HOLD_WAIT`` seconds for a holder to let go (one still stopping, or
a crashed one's session the server has not ended yet), then raises ``HeldElsewhere`` naming
the database and the holder. A database server that restarts ends the hold's session and so
the hold, while the cluster manager runs on through the outage (ADR 0010): ``renew`` (every
second, from ``tashi-cm``) notices, takes the hold again on a new session once the server
answers, and raises ``HeldElsewhere`` if another cluster manager took it meanwhile; then that
one keeps it, and this one stops.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool

from tashi.domain.errors import BackendFailure, Unavailable
from tashi.storage.sql.db import translate

log = logging.getLogger(__name__)

HOLD_WAIT = 3.0  # seconds a starting cluster manager waits for the holder to let go
POLL = 0.1
LOCK_SUFFIX = ".cm-lock"
PG_KEY = int.from_bytes(b"tashi-cm", "big")  # the advisory lock's bigint key
CONNECT_TIMEOUT = 3  # seconds; a renewal must not hang on a database that does not answer
SESSION_IDLE_LIMIT = 30  # MariaDB ends the hold's session after that long without a statement


class HeldElsewhere(Unavailable):
    """Another cluster manager holds the database (at start, or after a lost session)."""

    code = "held_elsewhere"


class Hold(Protocol):
    """The hold of one database by this process; see the module doc."""

    where: str  # the database, as an operator names it (no password)

    def try_take(self) -> bool:
        """Take the hold if nobody has it: ``True`` if this process holds it now. Raises
        ``BackendFailure`` if the database cannot be reached."""

    def holder(self) -> str:
        """Who holds it, as far as the database says (for messages)."""

    def renew(self) -> None:
        """Check the hold is still this process's, and take it again if the database dropped
        it. Raises ``HeldElsewhere`` if another process has it now."""

    def release(self) -> None:
        """Let go (idempotent). Ending the process does the same."""


def owner_name() -> str:
    return f"tashi-cm pid {os.getpid()} on {socket.gethostname()}"


def take_hold(
    url: URL,
    *,
    wait: float = HOLD_WAIT,
    owner: str | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Hold:
    """The hold of the database at ``url`` (``engine.database_url``), waiting up to ``wait``
    seconds for another holder to let go; ``HeldElsewhere`` after that."""
    name = owner or owner_name()
    hold: Hold
    if url.get_backend_name() == "sqlite":
        hold = FileHold(Path(url.database or ""), name)
    else:
        hold = SessionHold(url, name)
    deadline = monotonic() + wait
    waited = False
    while not hold.try_take():
        if monotonic() >= deadline:
            raise HeldElsewhere(
                f"another cluster manager holds the database {hold.where} ({hold.holder()}):"
                " stop it first, or give this one a database of its own ([SQL] uri)"
            )
        if not waited:
            log.info("%s holds the database; waiting up to %g s for it", hold.holder(), wait)
            waited = True
        sleep(POLL)
    return hold


class FileHold:
    """SQLite's hold: a ``flock`` on the lock file beside the database."""

    def __init__(self, database: Path, owner: str) -> None:
        self.where = str(database)
        self.path = database.with_name(database.name + LOCK_SUFFIX)
        self._owner = owner
        self._fd: int | None = None

    def try_take(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{self._owner}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def renew(self) -> None:
        """Nothing to do: a lock on an open file is not taken away while it is open."""

    def release(self) -> None:
        # The file stays: removing it would let a second process lock a new file while a
        # third still waits on the old one.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_TAKE = {
    "postgresql": "SELECT pg_try_advisory_lock(:key)",
    "mysql": "SELECT GET_LOCK(:name, 0)",
}
_HOLDER = {
    "postgresql": (
        "SELECT a.application_name || ' (backend ' || a.pid || ')'"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        " AND l.classid::bigint = :hi AND l.objid::bigint = :lo"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ),
    "mysql": (
        "SELECT CONCAT('connection ', ID, ' from ', HOST) FROM information_schema.PROCESSLIST"
        " WHERE ID = IS_USED_LOCK(:name)"
    ),
}


class SessionHold:
    """A database server's hold: a lock of a session kept open for the process's life."""

    def __init__(self, url: URL, owner: str) -> None:
        self._dialect = url.get_backend_name()
        self.where = _shown(url)
        if self._dialect not in _TAKE:
            raise BackendFailure(f"no cluster-manager hold for {self._dialect} databases")
        database = url.database or ""
        name = f"tashi-cm:{database}"
        if len(name) > 64:  # MariaDB's limit on lock names
            name = f"tashi-cm:{hashlib.sha256(database.encode()).hexdigest()[:55]}"
        self._params = {"key": PG_KEY, "name": name, "hi": PG_KEY >> 32, "lo": PG_KEY & 0xFFFFFFFF}
        self._engine = sa.create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=_connect_args(self._dialect, owner),
        )
        self._conn: Connection | None = None

    def try_take(self) -> bool:
        conn = self._connect()
        try:
            taken = bool(conn.execute(sa.text(_TAKE[self._dialect]), self._params).scalar())
        except sa_exc.SQLAlchemyError as exc:
            _close(conn)
            raise translate(exc) from exc
        if not taken:
            _close(conn)
            return False
        self._conn = conn
        return True

    def holder(self) -> str:
        try:
            with self._engine.connect() as conn:
                found = conn.execute(sa.text(_HOLDER[self._dialect]), self._params).scalar()
        except sa_exc.SQLAlchemyError:
            log.debug("could not ask %s who holds it", self.where, exc_info=True)
            found = None
        return str(found) if found else "unknown"

    def renew(self) -> None:
        if self._conn is not None:
            try:
                self._conn.exec_driver_sql("SELECT 1")
                return
            except sa_exc.SQLAlchemyError:
                _close(self._conn)
                self._conn = None
                log.warning(
                    "lost the session that holds the database %s (the database stopped or the"
                    " connection broke); taking the hold again once it answers",
                    self.where,
                )
        try:
            taken = self.try_take()
        except BackendFailure:
            return  # still away: the next renewal tries again (logged once, above)
        if not taken:
            raise HeldElsewhere(
                f"another cluster manager took the database {self.where} ({self.holder()})"
                " while this one's session was lost: this one stops"
            )
        log.warning("holds the database %s again", self.where)

    def release(self) -> None:
        if self._conn is not None:
            _close(self._conn)
            self._conn = None
        self._engine.dispose()

    def _connect(self) -> Connection:
        try:
            return self._engine.connect()
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc) from exc


def _shown(url: URL) -> str:
    """The database as ``[SQL] uri`` names it: no driver, password or charset."""
    query = {k: v for k, v in url.query.items() if k != "charset"}
    plain = URL.create(
        url.get_backend_name(),
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=query,
    )
    return plain.render_as_string()


def _connect_args(dialect: str, owner: str) -> dict[str, Any]:
    if dialect == "postgresql":
        return {
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": owner[:63],
            # ours notices a server that vanished, the server a cluster manager that did
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "options": "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2"
            " -c tcp_keepalives_count=3",
        }
    return {
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": 10,
        "write_timeout": 10,
        "init_command": f"SET SESSION wait_timeout = {SESSION_IDLE_LIMIT}",
    }


def _close(conn: Connection) -> None:
    # A session that broke may fail to close too; the server ends it (and its lock) anyway.
    try:
        conn.close()
    except sa_exc.SQLAlchemyError:
        log.debug("closing a broken session failed", exc_info=True)
