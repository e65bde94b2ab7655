"""Who is calling: logins, bearer tokens, the first admin, and the checks every service uses.

Authentication is always on. A login (user name + password, checked against a scrypt hash)
returns a random bearer token; only its SHA-256 is stored. Failed logins are throttled per user
and address, per address and per user (``throttle.py``): past a budget, a login is refused with
``Throttled`` before its password is checked. Verified tokens are cached in memory so that a
request costs no database read; removing a user or logging out drops the cache entry
(there is one cluster manager process, so the cache cannot go stale elsewhere).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from tashi.clustermanager.accounts.passwords import DUMMY_HASH, hash_password, verify_password
from tashi.clustermanager.accounts.throttle import LoginThrottle, ThrottleRules
from tashi.clustermanager.database import Database
from tashi.domain.clock import Clock
from tashi.domain.errors import Forbidden, NotAuthenticated, NotFound, TashiError
from tashi.domain.ids import UserId
from tashi.domain.models import Principal, Role, User
from tashi.storage.contract import Transaction

log = logging.getLogger(__name__)

_CACHE_LIMIT = 10_000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Login:
    token: str
    expires: datetime
    user: User


def require_role(caller: Principal, *roles: Role, doing: str) -> None:
    """``Forbidden`` unless the caller has one of ``roles``."""
    if caller.role not in roles:
        wanted = " or ".join(r.value for r in roles)
        raise Forbidden(f"{doing} needs the {wanted} role; {caller.name} is a {caller.role.value}")


def require_admin(caller: Principal, doing: str) -> None:
    require_role(caller, Role.admin, doing=doing)


def require_owner(caller: Principal, owner: UserId, doing: str) -> None:
    """Users act on their own instances; admins and the cluster's daemons on all."""
    if caller.user_id != owner and not caller.is_trusted:
        raise Forbidden(f"{doing}: the instance belongs to another user")


class AuthService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        token_lifetime: float,
        throttle: ThrottleRules | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._lifetime = timedelta(seconds=token_lifetime)
        self._cache: dict[str, tuple[Principal, datetime]] = {}
        self.throttle = LoginThrottle(throttle or ThrottleRules(), clock.monotonic)

    async def login(self, username: str, password: str, source: str) -> Login:
        """A new token for ``username``, logging in from the address ``source``.

        Raises ``NotAuthenticated`` for a wrong user name or password (the same either way),
        ``Throttled`` when too many logins failed lately (``throttle.py``)."""
        attempt = self.throttle.begin(username, source)
        try:
            done = await self._login(username, password)
        except NotAuthenticated:
            self.throttle.failed(attempt)
            raise
        except TashiError:
            self.throttle.withdraw(attempt)  # the database failed: no guess was judged
            raise
        # Anything else (a cancelled request) leaves the attempt counted as a failure.
        self.throttle.succeeded(attempt)
        return done

    async def _login(self, username: str, password: str) -> Login:
        def find(tx: Transaction) -> tuple[User | None, str]:
            try:
                user = tx.users.get_by_name(username)
            except NotFound:
                return None, DUMMY_HASH
            return user, tx.users.password_hash(user.id)

        user, stored = await self._db.read(find)
        ok = await asyncio.to_thread(verify_password, password, stored)
        if user is None or not ok:
            raise NotAuthenticated("wrong user name or password")
        token = secrets.token_urlsafe(32)
        expires = self._clock.now() + self._lifetime
        await self._db.write(lambda tx: tx.tokens.add(token_hash(token), user.id, expires=expires))
        return Login(token=token, expires=expires, user=user)

    async def logout(self, token: str) -> None:
        digest = token_hash(token)
        self._cache.pop(digest, None)
        await self._db.write(lambda tx: tx.tokens.remove(digest))

    async def authenticate(self, token: str | None) -> Principal:
        """The principal holding ``token``, or ``NotAuthenticated``."""
        if not token:
            raise NotAuthenticated(
                "no credentials: log in with a user name and password (POST /v1/auth/token)"
                " and send 'Authorization: Bearer <token>'"
            )
        digest = token_hash(token)
        now = self._clock.now()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        principal = await self._db.read(lambda tx: tx.tokens.principal(digest, now=now))
        if principal is None:
            self._cache.pop(digest, None)
            raise NotAuthenticated("the token is unknown or has expired; log in again")
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = (principal, now + timedelta(seconds=60))
        return principal

    def forget_user(self, user_id: UserId) -> None:
        """Drop cached tokens of a removed user at once."""
        for digest in [d for d, (p, _) in self._cache.items() if p.user_id == user_id]:
            del self._cache[digest]

    async def purge_expired(self) -> int:
        now = self._clock.now()
        return await self._db.write(lambda tx: tx.tokens.purge_expired(now))

    async def ensure_admin(self, credentials: Path, *, host: str, port: int) -> User | None:
        """At first start create the ``admin`` user and write its credentials to a private file.

        Returns the new user, or ``None`` when an admin existed already."""

        def admins(tx: Transaction) -> list[User]:
            return [u for u in tx.users.list() if u.role is Role.admin]

        if await self._db.read(admins):
            return None
        password = secrets.token_urlsafe(24)
        hashed = await asyncio.to_thread(hash_password, password)
        now = self._clock.now()
        user = await self._db.write(
            lambda tx: tx.users.add(
                "admin", role=Role.admin, priority=0, password_hash=hashed, now=now
            )
        )
        write_private(credentials, credentials_text(user.name, password, host, port))
        log.warning("created the admin user; its credentials are in %s (mode 0600)", credentials)
        return user


def credentials_text(username: str, password: str, host: str, port: int) -> str:
    client_host = "localhost" if host in ("0.0.0.0", "::", "") else host
    return (
        "# Written by tashi-cm at its first start: the credentials of the Tashi admin user.\n"
        "# Use it as a client configuration: TASHI_CONFIG=<this file> tashi getHosts\n"
        "# or copy it to ~/.tashi/Client.cfg (keep it private: chmod 600).\n"
        "[AccessClusterManager]\n"
        f"username = {username}\n"
        f"password = {password}\n"
        "\n[Client]\n"
        f"clusterManagerHost = {client_host}\n"
        f"clusterManagerPort = {port}\n"
    )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)
