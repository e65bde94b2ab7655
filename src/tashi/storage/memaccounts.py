"""The in-memory store's accounts (``memory.py``; the contracts are ``contract.UserRepository``,
``TokenRepository`` and ``AccessKeyRepository``): users, their API tokens and their EC2 access
keys, each list keyset-paged as the SQL store pages it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound
from tashi.domain.ids import UserId
from tashi.domain.models import AccessKey, Principal, Role, User
from tashi.storage.contract import ACCESS_KEY_MAX, SEALED_SECRET_MAX
from tashi.storage.memkeypairs import drop_user
from tashi.storage.memsecgroups import drop_user_groups
from tashi.storage.memtables import Tables, aware, page
from tashi.storage.memvolumes import check_user_removal
from tashi.storage.shared import bounded, check_limit


class MemoryUsers:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(
        self, name: str, *, role: Role, priority: int, password_hash: str, now: datetime
    ) -> User:
        aware(now)
        if any(u.name == name for u in self._t.users.values()):
            raise AlreadyExists(f"a user named {name!r} exists already")
        uid = UserId(self._t.next_user)
        self._t.next_user += 1
        user = User(id=uid, name=name, role=role, priority=priority, created_at=now)
        self._t.users[uid] = user
        self._t.passwords[uid] = password_hash
        return user

    def get(self, user_id: UserId) -> User:
        try:
            return self._t.users[user_id]
        except KeyError:
            raise NotFound(f"user {user_id} does not exist") from None

    def get_by_name(self, name: str) -> User:
        for user in self._t.users.values():
            if user.name == name:
                return user
        raise NotFound(f"no user is named {name!r}")

    def list(self, *, after_id: UserId | None = None, limit: int | None = None) -> list[User]:
        return page(self._t.users.values(), after_id, limit)

    def password_hash(self, user_id: UserId) -> str:
        self.get(user_id)
        return self._t.passwords[user_id]

    def set_password_hash(self, user_id: UserId, password_hash: str) -> None:
        self.get(user_id)
        self._t.passwords[user_id] = password_hash

    def remove(self, user_id: UserId) -> None:
        user = self.get(user_id)
        owned = sum(1 for i in self._t.instances.values() if i.user_id == user_id)
        if owned:
            raise InvalidState(f"user {user.name!r} still owns {owned} instance(s)")
        check_user_removal(self._t, user_id, user.name)
        del self._t.users[user_id]
        del self._t.passwords[user_id]
        self._t.tokens = {k: v for k, v in self._t.tokens.items() if v[0] != user_id}
        self._t.access_keys = {
            k: v for k, v in self._t.access_keys.items() if v[0].user_id != user_id
        }
        self._t.links = {k: v for k, v in self._t.links.items() if v.user_id != user_id}
        drop_user(self._t, user_id)
        drop_user_groups(self._t, user_id)
        for host in list(self._t.hosts.values()):
            if user_id in host.reserved:
                self._t.hosts[host.id] = replace(
                    host, reserved=tuple(u for u in host.reserved if u != user_id)
                )


class MemoryTokens:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(self, token_hash: str, user_id: UserId, *, expires: datetime) -> None:
        aware(expires)
        if user_id not in self._t.users:
            raise NotFound(f"user {user_id} does not exist")
        if token_hash in self._t.tokens:
            raise AlreadyExists("that token exists already")
        self._t.tokens[token_hash] = (user_id, expires)

    def principal(self, token_hash: str, *, now: datetime) -> Principal | None:
        aware(now)
        found = self._t.tokens.get(token_hash)
        if found is None or found[1] <= now or found[0] not in self._t.users:
            return None
        user = self._t.users[found[0]]
        return Principal(user_id=user.id, name=user.name, role=user.role)

    def remove(self, token_hash: str) -> None:
        self._t.tokens.pop(token_hash, None)

    def purge_expired(self, now: datetime) -> int:
        aware(now)
        expired = [k for k, (_, exp) in self._t.tokens.items() if exp <= now]
        for key in expired:
            del self._t.tokens[key]
        return len(expired)


class MemoryAccessKeys:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(self, key: AccessKey, sealed_secret: str) -> None:
        bounded("an access key id", key.id, ACCESS_KEY_MAX)
        bounded("a sealed secret", sealed_secret, SEALED_SECRET_MAX)
        aware(key.created_at)
        if key.user_id not in self._t.users:
            raise NotFound(f"user {key.user_id} does not exist")
        if key.id in self._t.access_keys:
            raise AlreadyExists(f"the access key {key.id} exists already")
        self._t.access_keys[key.id] = (key, sealed_secret)

    def get(self, key_id: str) -> tuple[AccessKey, str, Principal] | None:
        found = self._t.access_keys.get(key_id)
        if found is None:
            return None
        user = self._t.users[found[0].user_id]
        return found[0], found[1], Principal(user_id=user.id, name=user.name, role=user.role)

    def list(
        self,
        user_id: UserId | None = None,
        *,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> list[AccessKey]:
        keys = [k for k, _ in self._t.access_keys.values()]
        mine = sorted(
            (k for k in keys if user_id is None or k.user_id == user_id),
            key=lambda k: (k.created_at, k.id),
        )
        if after_key is not None:
            marker = self._t.access_keys.get(after_key)
            if marker is None:
                raise InvalidInput(f"no access key {after_key} to list after")
            start = (marker[0].created_at, marker[0].id)
            mine = [k for k in mine if (k.created_at, k.id) > start]
        return mine if limit is None else mine[: check_limit(limit)]

    def remove(self, key_id: str) -> None:
        if self._t.access_keys.pop(key_id, None) is None:
            raise NotFound(f"no access key {key_id}")
