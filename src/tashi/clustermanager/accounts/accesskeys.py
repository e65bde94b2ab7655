"""Users' EC2 access keys: made, listed and deleted with the ``tashi`` client, used by the EC2
front-end to verify AWS Signature Version 4.

A signature is an HMAC keyed by (a key derived from) the secret itself, so the cluster manager
must be able to read the secret again: it is stored **sealed** (Fernet: AES-128-CBC and
HMAC-SHA256) with a key of the cluster manager's own, ``<stateDir>/access-keys.key`` (mode
0600, made at first use). A copy of the database alone (a backup, the PostgreSQL server's
administrator) gives no secret away. The secret is shown once, in the answer that makes the
key; it is never logged or returned again. Losing the key file makes every access key
useless: delete them and make new ones.

Verified keys are cached in memory for a minute, as bearer tokens are (``auth.py``); deleting a
key or its user drops the entry at once.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.auth import require_admin
from tashi.clustermanager.database import Database
from tashi.domain.clock import Clock
from tashi.domain.errors import BackendFailure, Dependency, NotFound
from tashi.domain.ids import UserId
from tashi.domain.models import AccessKey, Principal, User
from tashi.storage.contract import Transaction

KEY_FILE = "access-keys.key"
ID_PREFIX = "AKIA"  # what AWS's long-term keys start with; tools expect 20 capitals/digits
_ID_ALPHABET = string.ascii_uppercase + "234567"
_CACHE_SECONDS = 60.0
_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class NewAccessKey:
    """A key just made, with its secret: the one time the secret is told."""

    key: AccessKey
    secret: str
    user: User


class Sealer:
    """Seals and opens secrets with the key in ``path`` (made, 0600, when missing)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @functools.cached_property
    def _fernet(self) -> Fernet:
        try:
            return Fernet(self._key())
        except (OSError, ValueError) as exc:
            raise BackendFailure(
                f"cannot use the access-key sealing key {self._path}: {exc}",
                failed=Dependency.file_system,
            ) from exc

    def _key(self) -> bytes:
        try:
            return self._path.read_bytes().strip()
        except FileNotFoundError:
            pass
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Fernet.generate_key()
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another thread: use that one
            return self._path.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
        return key

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise BackendFailure(
                f"an access key's secret does not open with {self._path} (was it replaced?)",
                failed=Dependency.file_system,
            ) from exc


class AccessKeyService:
    def __init__(self, db: Database, clock: Clock, sealer: Sealer) -> None:
        self._db = db
        self._clock = clock
        self._sealer = sealer
        self._cache: dict[str, tuple[str, Principal, float]] = {}

    async def create(self, caller: Principal, user_ref: str | None = None) -> NewAccessKey:
        """A new key for the caller, or (admins) for the user named ``user_ref``."""
        secret = secrets.token_urlsafe(30)  # 40 characters, as AWS's secrets
        key_id = ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
        sealed = await asyncio.to_thread(self._sealer.seal, secret)
        now = self._clock.now()

        def add(tx: Transaction) -> tuple[AccessKey, User]:
            user = self._whose(tx, caller, user_ref, "making a key for another user")
            key = AccessKey(id=key_id, user_id=user.id, created_at=now)
            tx.access_keys.add(key, sealed)
            return key, user

        key, user = await self._db.write(add)
        return NewAccessKey(key=key, secret=secret, user=user)

    async def list(
        self,
        caller: Principal,
        user_ref: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[AccessKey, str]]:
        """The caller's keys with their owner's name, oldest first; an admin's ``user_ref``
        names whose ("*": everyone's). ``after`` (a key id) and ``limit`` give one page."""

        def read(tx: Transaction) -> list[tuple[AccessKey, str]]:
            names = {u.id: u.name for u in tx.users.list()}
            if user_ref == "*":
                require_admin(caller, "listing everyone's access keys")
                keys = tx.access_keys.list(after_key=after, limit=limit)
            else:
                user = self._whose(tx, caller, user_ref, "listing another user's keys")
                keys = tx.access_keys.list(user.id, after_key=after, limit=limit)
            return [(k, names.get(k.user_id, str(k.user_id))) for k in keys]

        return await self._db.read(read)

    async def delete(self, caller: Principal, key_id: str) -> AccessKey:
        """Delete a key of the caller's (admins: anyone's); the key as it was."""

        def remove(tx: Transaction) -> AccessKey:
            found = tx.access_keys.get(key_id)
            if found is None or (found[0].user_id != caller.user_id and not caller.is_admin):
                raise NotFound(f"no access key {key_id} of yours")
            tx.access_keys.remove(key_id)
            return found[0]

        key = await self._db.write(remove)
        self._cache.pop(key_id, None)
        return key

    async def secret_of(self, key_id: str) -> tuple[str, Principal] | None:
        """The secret and user of ``key_id`` (``None``: no such key), for a signature check."""
        now = self._clock.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached[2] > now:
            return cached[0], cached[1]
        found = await self._db.read(lambda tx: tx.access_keys.get(key_id))
        if found is None:
            self._cache.pop(key_id, None)
            return None
        _, sealed, principal = found
        secret = await asyncio.to_thread(self._sealer.open, sealed)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key_id] = (secret, principal, now + _CACHE_SECONDS)
        return secret, principal

    def forget_user(self, user_id: UserId) -> None:
        """Drop the cached keys of a removed user at once."""
        for key_id in [k for k, (_, p, _) in self._cache.items() if p.user_id == user_id]:
            del self._cache[key_id]

    @staticmethod
    def _whose(tx: Transaction, caller: Principal, user_ref: str | None, doing: str) -> User:
        user = tx.users.get(caller.user_id) if user_ref is None else refs.user(tx, user_ref)
        if user.id != caller.user_id:
            require_admin(caller, doing)
        return user
