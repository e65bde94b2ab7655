"""The key pair and tag repositories over SQL.

Implements ``KeyPairRepository`` and ``TagRepository`` of ``storage/contract.py`` on the
``key_pairs``, ``key_pair_tags`` and ``image_tags`` tables of ``tables.py``. A key pair's name
is unique per user by ``uq_key_pairs_user_name`` (race-free); its tags and the key pair itself
go with their key pair and user by ``ON DELETE CASCADE``. Setting a tag is a delete and an
insert of its row in the caller's transaction, the same on SQLite, PostgreSQL and MariaDB.
Errors pass through ``db.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa

from tashi.domain.errors import AlreadyExists, NotFound, TashiError
from tashi.domain.ids import UserId
from tashi.domain.keypairs import KeyPair, KeyType
from tashi.storage.shared import checked_key_pair, checked_tags
from tashi.storage.sql.db import Db, Violation
from tashi.storage.sql.tables import key_pairs as t_pairs

_COLUMNS = (
    t_pairs.c.id,
    t_pairs.c.user_id,
    t_pairs.c.name,
    t_pairs.c.key_type,
    t_pairs.c.fingerprint,
    t_pairs.c.public_key,
    t_pairs.c.created_at,
)


def _pair(row: Sequence[object]) -> KeyPair:
    key_id, user_id, name, key_type, fingerprint, public_key, created_at = row
    return KeyPair(
        id=str(key_id),
        user_id=UserId(int(str(user_id))),
        name=str(name),
        key_type=KeyType(key_type),
        fingerprint=str(fingerprint),
        public_key=str(public_key),
        created_at=created_at,  # type: ignore[arg-type]  # UtcDateTime: an aware datetime
    )


class SqlKeyPairs:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, pair: KeyPair) -> None:
        checked_key_pair(pair)

        def explain(v: Violation) -> TashiError:
            if v.foreign_key:
                return NotFound(f"user {pair.user_id} does not exist")
            if v.constraint == "pk_key_pairs":
                return AlreadyExists(f"the key pair {pair.id} exists already")
            return AlreadyExists(f"the key pair '{pair.name}' already exists")

        row = {
            "id": pair.id,
            "user_id": pair.user_id,
            "name": pair.name,
            "key_type": pair.key_type.value,
            "fingerprint": pair.fingerprint,
            "public_key": pair.public_key,
            "created_at": pair.created_at,
        }
        self._db.execute(sa.insert(t_pairs), row, explain=explain)

    def get(self, key_id: str) -> KeyPair | None:
        row = self._db.execute(sa.select(*_COLUMNS).where(t_pairs.c.id == key_id)).one_or_none()
        return None if row is None else _pair(row)

    def named(self, user_id: UserId, name: str) -> KeyPair | None:
        query = sa.select(*_COLUMNS).where(t_pairs.c.user_id == user_id, t_pairs.c.name == name)
        row = self._db.execute(query).one_or_none()
        return None if row is None else _pair(row)

    def list(self, user_id: UserId | None = None) -> list[KeyPair]:
        query = sa.select(*_COLUMNS)
        if user_id is not None:
            query = query.where(t_pairs.c.user_id == user_id)
        rows = self._db.execute(query.order_by(t_pairs.c.user_id, t_pairs.c.name))
        return [_pair(r) for r in rows]

    def remove(self, key_id: str) -> None:
        # its tags go by the cascade (SQLite's foreign keys are on: engine.py)
        if self._db.execute(sa.delete(t_pairs).where(t_pairs.c.id == key_id)).rowcount == 0:
            raise NotFound(f"no key pair {key_id}")


class SqlTags:
    """The tags of one kind of resource, in ``table`` (columns: the reference, ``tag_key``,
    ``tag_value``); ``what`` names the kind (for ``NotFound``)."""

    def __init__(self, db: Db, table: sa.Table, ref: str, what: str = "key pair") -> None:
        self._db = db
        self._t = table
        self._ref = table.c[ref]
        self._what = what

    def of(self, refs: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
        c = self._t.c
        query = sa.select(self._ref, c.tag_key, c.tag_value)
        if refs is not None:
            if not refs:
                return {}
            query = query.where(self._ref.in_(list(refs)))
        out: dict[str, dict[str, str]] = {}
        for ref, key, value in self._db.execute(query.order_by(self._ref, c.tag_key)):
            out.setdefault(ref, {})[key] = value
        return out

    def put(self, ref: str, tags: Mapping[str, str]) -> None:
        checked_tags(tags)
        if not tags:
            return
        self._delete(ref, list(tags))

        def explain(v: Violation) -> TashiError:
            return NotFound(f"no {self._what} {ref}") if v.foreign_key else AlreadyExists(v.message)

        rows = [{self._ref.name: ref, "tag_key": k, "tag_value": v} for k, v in tags.items()]
        self._db.execute(sa.insert(self._t), rows, explain=explain)

    def delete(self, ref: str, keys: Iterable[str] | None = None) -> int:
        return self._delete(ref, None if keys is None else list(keys))

    def _delete(self, ref: str, keys: list[str] | None) -> int:
        stmt = sa.delete(self._t).where(self._ref == ref)
        if keys is not None:
            if not keys:
                return 0
            stmt = stmt.where(self._t.c.tag_key.in_(keys))
        return int(self._db.execute(stmt).rowcount)
