"""The user, token and access-key repositories over SQL.

Implements ``UserRepository``, ``TokenRepository`` and ``AccessKeyRepository`` of
``storage/contract.py`` on the ``users``, ``tokens`` and ``access_keys`` tables of ``tables.py``.
Removing a user cascades to their tokens, access keys and host reservations in the database;
their instances, volumes and snapshots hold it back (RESTRICT foreign keys).
Errors pass through ``db.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound, TashiError
from tashi.domain.ids import UserId
from tashi.domain.models import AccessKey, Principal, Role, User
from tashi.storage.contract import ACCESS_KEY_MAX, SEALED_SECRET_MAX
from tashi.storage.shared import bounded, check_limit
from tashi.storage.sql.db import Db, Violation
from tashi.storage.sql.tables import access_keys as t_keys
from tashi.storage.sql.tables import instances as t_inst
from tashi.storage.sql.tables import snapshots as t_snaps
from tashi.storage.sql.tables import tokens as t_tokens
from tashi.storage.sql.tables import users as t_users
from tashi.storage.sql.tables import volumes as t_vols

_ROLES = {role.value: role for role in Role}
_USER_COLUMNS = (
    t_users.c.id,
    t_users.c.name,
    t_users.c.role,
    t_users.c.priority,
    t_users.c.created_at,
)


class SqlUsers:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(
        self, name: str, *, role: Role, priority: int, password_hash: str, now: datetime
    ) -> User:
        def explain(v: Violation) -> TashiError:
            return AlreadyExists(f"a user named {name!r} exists already")

        row = {
            "name": name,
            "role": role.value,
            "priority": priority,
            "password_hash": password_hash,
            "created_at": now,
        }
        uid = UserId(self._db.insert(sa.insert(t_users), row, explain=explain))
        return User(id=uid, name=name, role=role, priority=priority, created_at=now)

    def _select(self, condition: sa.ColumnElement[bool], limit: int | None = None) -> list[User]:
        query = sa.select(*_USER_COLUMNS).where(condition).order_by(t_users.c.id)
        if limit is not None:
            query = query.limit(check_limit(limit))
        return [_user(row) for row in self._db.execute(query)]

    def get(self, user_id: UserId) -> User:
        found = self._select(t_users.c.id == user_id)
        if not found:
            raise NotFound(f"user {user_id} does not exist")
        return found[0]

    def get_by_name(self, name: str) -> User:
        found = self._select(t_users.c.name == name)
        if not found:
            raise NotFound(f"no user is named {name!r}")
        return found[0]

    def list(self, *, after_id: UserId | None = None, limit: int | None = None) -> list[User]:
        after = sa.true() if after_id is None else t_users.c.id > after_id
        return self._select(after, limit)

    def password_hash(self, user_id: UserId) -> str:
        query = sa.select(t_users.c.password_hash).where(t_users.c.id == user_id)
        found = self._db.execute(query).scalar_one_or_none()
        if found is None:
            raise NotFound(f"user {user_id} does not exist")
        return str(found)

    def set_password_hash(self, user_id: UserId, password_hash: str) -> None:
        stmt = sa.update(t_users).where(t_users.c.id == user_id).values(password_hash=password_hash)
        if self._db.execute(stmt).rowcount == 0:
            raise NotFound(f"user {user_id} does not exist")

    def remove(self, user_id: UserId) -> None:
        user = self.get(user_id)

        def explain(v: Violation) -> TashiError:
            return InvalidState(f"user {user.name!r} still owns instances, volumes or snapshots")

        # Counting first gives the better message; the RESTRICT foreign keys still decide
        # when an instance, volume or snapshot is added concurrently (explain).
        owned_query = sa.select(sa.func.count()).where(t_inst.c.user_id == user_id)
        owned = int(self._db.execute(owned_query).scalar_one())
        if owned:
            raise InvalidState(f"user {user.name!r} still owns {owned} instance(s)")
        volumes, snapshots = (self._count(t, user_id) for t in (t_vols, t_snaps))
        if volumes or snapshots:
            raise InvalidState(
                f"user {user.name!r} still owns {volumes} volume(s) and {snapshots} snapshot(s)"
            )
        self._db.execute(sa.delete(t_users).where(t_users.c.id == user_id), explain=explain)

    def _count(self, table: sa.Table, user_id: UserId) -> int:
        query = sa.select(sa.func.count()).where(table.c.user_id == user_id)
        return int(self._db.execute(query).scalar_one())


def _user(row: Any) -> User:
    uid, name, role, priority, created_at = row
    return User(id=uid, name=name, role=_ROLES[role], priority=priority, created_at=created_at)


class SqlTokens:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, token_hash: str, user_id: UserId, *, expires: datetime) -> None:
        def explain(v: Violation) -> TashiError:
            if v.foreign_key:
                return NotFound(f"user {user_id} does not exist")
            return AlreadyExists("that token exists already")

        row = {"token_hash": token_hash, "user_id": user_id, "expires": expires}
        self._db.execute(sa.insert(t_tokens), row, explain=explain)

    def principal(self, token_hash: str, *, now: datetime) -> Principal | None:
        query = (
            sa.select(t_users.c.id, t_users.c.name, t_users.c.role)
            .select_from(t_tokens.join(t_users, t_users.c.id == t_tokens.c.user_id))
            .where(t_tokens.c.token_hash == token_hash, t_tokens.c.expires > now)
        )
        row = self._db.execute(query).one_or_none()
        if row is None:
            return None
        return Principal(user_id=row[0], name=row[1], role=_ROLES[row[2]])

    def remove(self, token_hash: str) -> None:
        self._db.execute(sa.delete(t_tokens).where(t_tokens.c.token_hash == token_hash))

    def purge_expired(self, now: datetime) -> int:
        result = self._db.execute(sa.delete(t_tokens).where(t_tokens.c.expires <= now))
        return int(result.rowcount)


class SqlAccessKeys:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, key: AccessKey, sealed_secret: str) -> None:
        bounded("an access key id", key.id, ACCESS_KEY_MAX)
        bounded("a sealed secret", sealed_secret, SEALED_SECRET_MAX)

        def explain(v: Violation) -> TashiError:
            if v.foreign_key:
                return NotFound(f"user {key.user_id} does not exist")
            return AlreadyExists(f"the access key {key.id} exists already")

        row = {
            "id": key.id,
            "user_id": key.user_id,
            "sealed_secret": sealed_secret,
            "created_at": key.created_at,
        }
        self._db.execute(sa.insert(t_keys), row, explain=explain)

    def get(self, key_id: str) -> tuple[AccessKey, str, Principal] | None:
        query = (
            sa.select(
                t_keys.c.user_id,
                t_keys.c.created_at,
                t_keys.c.sealed_secret,
                t_users.c.name,
                t_users.c.role,
            )
            .select_from(t_keys.join(t_users, t_users.c.id == t_keys.c.user_id))
            .where(t_keys.c.id == key_id)
        )
        row = self._db.execute(query).one_or_none()
        if row is None:
            return None
        user_id, created_at, sealed, name, role = row
        key = AccessKey(id=key_id, user_id=user_id, created_at=created_at)
        return key, str(sealed), Principal(user_id=user_id, name=name, role=_ROLES[role])

    def list(
        self,
        user_id: UserId | None = None,
        *,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> list[AccessKey]:
        c = t_keys.c
        query = sa.select(c.id, c.user_id, c.created_at)
        if user_id is not None:
            query = query.where(c.user_id == user_id)
        if after_key is not None:
            marker = sa.select(c.created_at).where(c.id == after_key)
            created = self._db.execute(marker).scalar_one_or_none()
            if created is None:
                raise InvalidInput(f"no access key {after_key} to list after")
            later = sa.or_(
                c.created_at > created, sa.and_(c.created_at == created, c.id > after_key)
            )
            query = query.where(later)
        if limit is not None:
            query = query.limit(check_limit(limit))
        rows = self._db.execute(query.order_by(c.created_at, c.id))
        return [AccessKey(id=r[0], user_id=r[1], created_at=r[2]) for r in rows]

    def remove(self, key_id: str) -> None:
        if self._db.execute(sa.delete(t_keys).where(t_keys.c.id == key_id)).rowcount == 0:
            raise NotFound(f"no access key {key_id}")
