"""User administration: SLA@SOI's ``registerUser --name --passwd --priority`` and
``unregisterUser``, with roles. Users see only themselves; admins see everyone."""

from __future__ import annotations

import asyncio

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.accesskeys import AccessKeyService
from tashi.clustermanager.accounts.auth import AuthService, require_admin
from tashi.clustermanager.accounts.passwords import hash_password
from tashi.clustermanager.database import Database
from tashi.domain import validation
from tashi.domain.clock import Clock
from tashi.domain.errors import Forbidden, InvalidInput, InvalidState
from tashi.domain.ids import UserId
from tashi.domain.models import Principal, Role, User
from tashi.storage.contract import Transaction

MAX_PRIORITY = 1_000_000


class UserService:
    def __init__(
        self, db: Database, clock: Clock, auth: AuthService, keys: AccessKeyService
    ) -> None:
        self._db = db
        self._clock = clock
        self._auth = auth
        self._keys = keys
        self._names: dict[int, str] | None = None  # None: not loaded or out of date

    async def list(
        self, caller: Principal, *, after: UserId | None = None, limit: int | None = None
    ) -> list[User]:
        """``getUsers``: every user for a trusted caller, else the caller alone; ``after`` and
        ``limit`` give a page of them (keyset paging by id)."""
        if caller.is_trusted:
            return await self._db.read(lambda tx: tx.users.list(after_id=after, limit=limit))
        me = await self._db.read(lambda tx: tx.users.get(caller.user_id))
        return [me] if (after is None or me.id > after) and limit != 0 else []

    async def get(self, caller: Principal, ref: str) -> User:
        user = await self._db.read(lambda tx: refs.user(tx, ref))
        if user.id != caller.user_id and not caller.is_trusted:
            raise Forbidden("a user may only look at themselves")
        return user

    async def names(self) -> dict[int, str]:
        """User id -> name, for rendering owners (cached; dropped on every change)."""
        names = self._names
        if names is None:
            users = await self._db.read(lambda tx: tx.users.list())
            names = self._names = {u.id: u.name for u in users}
        return names

    async def register(
        self, caller: Principal, name: str, password: str, *, priority: int = 0, role: str = "user"
    ) -> User:
        require_admin(caller, "registering users")
        validation.user_name(name)
        validation.password(password)
        try:
            wanted = Role(role.strip().lower())
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidInput(f"{role!r} is not a role; roles: {roles}") from None
        if not 0 <= priority <= MAX_PRIORITY:
            raise InvalidInput(f"priority must be between 0 and {MAX_PRIORITY}")
        hashed = await asyncio.to_thread(hash_password, password)
        now = self._clock.now()
        user = await self._db.write(
            lambda tx: tx.users.add(
                name, role=wanted, priority=priority, password_hash=hashed, now=now
            )
        )
        self._names = None
        return user

    async def unregister(self, caller: Principal, ref: str) -> User:
        """Refused for oneself, for the last admin, and while the user owns instances."""
        require_admin(caller, "unregistering users")

        def run(tx: Transaction) -> User:
            user = refs.user(tx, ref)
            if user.id == caller.user_id:
                raise InvalidState("you cannot unregister yourself")
            if user.role is Role.admin and sum(u.role is Role.admin for u in tx.users.list()) < 2:
                raise InvalidState("this is the last admin; register another admin first")
            tx.users.remove(user.id)
            return user

        user = await self._db.write(run)
        self._auth.forget_user(user.id)
        self._keys.forget_user(user.id)
        self._names = None
        return user
