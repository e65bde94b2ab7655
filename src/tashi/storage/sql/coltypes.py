"""Column types that behave the same on SQLite, PostgreSQL and MariaDB.

``UtcDateTime`` stores an instant and always gives back a timezone-aware UTC ``datetime``
(PostgreSQL ``timestamptz``; MariaDB ``DATETIME(6)`` and SQLite text hold naive UTC).
``Name`` is a string compared code point by code point everywhere (PostgreSQL ``COLLATE "C"``,
MariaDB ``utf8mb4_bin`` via the table options in ``tables.py``, SQLite ``BINARY``), so equality,
uniqueness and the prefix ranges of ``repositories`` mean the same thing on all three.
Used by ``tables.py`` and by the hand-written migrations.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from tashi.domain.errors import InvalidInput

#: Table options every table gets on MariaDB: InnoDB, full Unicode, binary comparison.
MYSQL_TABLE_ARGS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def name_type(length: int) -> TypeEngine[str]:
    """A ``VARCHAR(length)`` compared by code point (see the module docstring)."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware ``datetime`` in, an aware UTC ``datetime`` out; naive values are refused."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"timestamp {value.isoformat()} has no time zone")
        utc = value.astimezone(UTC)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        # Replaces (rather than wraps) the impl's reader on purpose: each driver's raw value is
        # known, and SQLAlchemy's regex-based SQLite reader plus the decorator's extra call per
        # value cost more than all the rest of a 10,000-instance listing.
        return utc_reader(dialect.name)


def utc_reader(dialect: str) -> Callable[[Any], datetime | None]:
    """The function that turns a raw timestamp from ``dialect``'s driver into aware UTC."""
    if dialect == "sqlite":  # ISO text as SQLAlchemy's SQLite DATETIME writes it, naive UTC
        parse = datetime.fromisoformat
        return lambda value: None if value is None else parse(value + "+00:00")
    if dialect == "postgresql":  # aware, in the session's time zone (UTC, see engine.py)
        return lambda value: (
            value if value is None or value.tzinfo is UTC else value.astimezone(UTC)
        )
    return lambda value: None if value is None else value.replace(tzinfo=UTC)  # naive UTC
