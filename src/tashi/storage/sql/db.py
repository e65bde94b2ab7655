"""The one seam between SQLAlchemy and Tashi: every statement runs through ``Db.execute``.

A database error never leaves the SQL store as itself. ``translate`` turns it into a Tashi
category, ``raise ... from exc``:

* an ``IntegrityError`` becomes what the caller's ``explain`` says (``AlreadyExists`` naming the
  name or MAC, ``NotFound``, ``InvalidState``), given a ``Violation`` that names the broken
  constraint and, where the database says it, the offending value;
* anything else from the driver (lost connection, deadlock, lock timeout) is ``BackendFailure``
  of the ``database`` (``failed``): its message, which may name the server's socket, host and
  port, is for the log; a caller of the API is told only that the database failed.

After an integrity error PostgreSQL refuses further statements in the transaction; that is
fine, because the error propagates out of ``transaction()``, which rolls the whole unit back.
Used by the repositories (``instances.py``, ``hosts.py``, ``accounts.py``, ``events.py``) and
``store.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.sql import Executable

from tashi.domain.errors import BackendFailure, Dependency, TashiError
from tashi.storage.sql.tables import metadata


@dataclass(frozen=True, slots=True)
class Violation:
    """Which integrity rule a statement broke, as far as the database told us.

    ``constraint`` is our name for it (``uq_nics_mac``, ``fk_instances_user``, ``pk_networks``)
    or ``None`` when the database does not say (SQLite never names foreign keys).
    ``value`` is the offending value when the database reports it (PostgreSQL, MariaDB)."""

    constraint: str | None
    value: str | None
    foreign_key: bool
    message: str


Explain = Callable[[Violation], TashiError]


class Db:
    """A connection inside one transaction, whose errors are always Tashi errors."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name

    def execute(
        self,
        stmt: Executable,
        params: Mapping[str, Any] | list[dict[str, Any]] | None = None,
        *,
        explain: Explain | None = None,
    ) -> CursorResult[*tuple[Any, ...]]:
        try:
            return self.conn.execute(stmt, params)
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc, explain) from exc

    def insert(
        self, stmt: Executable, row: Mapping[str, Any], *, explain: Explain | None = None
    ) -> int:
        """Run a one-row INSERT and return the id the database gave the row (``explain``: as
        for ``execute``; a table without constraints to break needs none)."""
        key = self.execute(stmt, row, explain=explain).inserted_primary_key
        if key is None:
            raise BackendFailure(
                "the database did not report the new row's id", failed=Dependency.database
            )
        return int(key[0])


def translate(exc: sa_exc.SQLAlchemyError, explain: Explain | None = None) -> TashiError:
    """The Tashi error that stands for ``exc`` (see the module docstring)."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, TashiError):  # raised by one of our column types while binding
        return orig
    if isinstance(exc, sa_exc.IntegrityError):
        violation = violation_of(exc)
        if explain is not None:
            return explain(violation)
        return BackendFailure(
            f"the database refused a change: {violation.message}", failed=Dependency.database
        )
    return BackendFailure(
        f"database failure: {_first_line(orig if orig is not None else exc)}",
        failed=Dependency.database,
    )


def violation_of(exc: sa_exc.IntegrityError) -> Violation:
    orig = exc.orig
    message = _first_line(orig)
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg: the server names the constraint and details the key
        detail = diag.message_detail or ""
        found = re.search(r"\)=\((.*)\)", detail)
        return Violation(
            constraint=diag.constraint_name,
            value=found.group(1) if found else None,
            foreign_key="foreign key" in message,
            message=message,
        )
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # pymysql: (errno, text)
        return _mysql_violation(args[0], str(args[1]))
    return _sqlite_violation(message)


_MYSQL_DUPLICATE = re.compile(r"Duplicate entry '(.*)' for key '(?:\w+\.)?(\w+)'")
_MYSQL_FOREIGN = re.compile(r"CONSTRAINT `(\w+)` FOREIGN KEY")


def _mysql_violation(errno: int, message: str) -> Violation:
    duplicate = _MYSQL_DUPLICATE.search(message)
    if duplicate:
        key = duplicate.group(2)
        return Violation(
            constraint=None if key == "PRIMARY" else key,
            value=duplicate.group(1),
            foreign_key=False,
            message=message,
        )
    foreign = _MYSQL_FOREIGN.search(message)
    return Violation(
        constraint=foreign.group(1) if foreign else None,
        value=None,
        foreign_key=errno in (1216, 1217, 1451, 1452),
        message=message,
    )


def _sqlite_violation(message: str) -> Violation:
    if "FOREIGN KEY" in message:
        return Violation(constraint=None, value=None, foreign_key=True, message=message)
    columns = message.partition("constraint failed: ")[2].strip()
    return Violation(
        constraint=_SQLITE_KEYS.get(columns), value=None, foreign_key=False, message=message
    )


def _unique_keys() -> dict[str, str]:
    """``"nics.network_id, nics.ip"`` -> ``"uq_nics_network_ip"``: how SQLite names a rule."""
    keys: dict[str, str] = {}
    for table in metadata.tables.values():
        rules: list[tuple[str | None, list[str]]] = [
            (str(c.name), [col.name for col in c.columns])
            for c in table.constraints
            if isinstance(c, sa.UniqueConstraint | sa.PrimaryKeyConstraint)
        ]
        rules += [(str(i.name), [col.name for col in i.columns]) for i in table.indexes if i.unique]
        for name, columns in rules:
            keys[", ".join(f"{table.name}.{col}" for col in columns)] = str(name)
    return keys


_SQLITE_KEYS = _unique_keys()


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
