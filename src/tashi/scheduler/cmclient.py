"""The scheduler's client of the cluster manager's public API (async httpx, the agent's login).

Answers that are not 2xx carry ``{"error": {"code", "message"}}`` and become the matching
``TashiError`` (``InsufficientResources`` for a refused claim, ``InvalidState`` for an instance
another scheduler placed, …); a connection failure or timeout is ``Unavailable``. The client
logs in again once when its token has expired. ``http`` (base URL and bearer token set) is what
hooks get in their ``HookContext``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from tashi.api import paths
from tashi.api.schemas import ChangesOut, HostOut, InstanceOut, UserOut
from tashi.domain.errors import (
    BackendFailure,
    NotAuthenticated,
    TashiError,
    Unavailable,
    error_class,
)

T = TypeVar("T")
PAGE = 5000
_HOSTS = TypeAdapter(list[HostOut])
_INSTANCES = TypeAdapter(list[InstanceOut])
_USERS = TypeAdapter(list[UserOut])
_INSTANCE = TypeAdapter(InstanceOut)
_CHANGES = TypeAdapter(ChangesOut)
ACTIVATE_GROUP = f"{paths.PREFIX}/instances:activateGroup"  # ADR 0009
# activateGroup answers once every member's VM has started, so its wait grows with the group:
# a group of 100 on ten busy virtual hosts took longer than one activation's 30 s, the scheduler
# gave up on the whole group while its VMs were starting, and held its members.
GROUP_SECONDS_PER_MEMBER = 1.0


class CmClient:
    def __init__(
        self,
        base_url: str,
        *,
        username: str = "",
        password: str = "",
        token: str = "",
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._username, self._password = username, password
        self._timeout = timeout
        self.http = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=5.0)
        )
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    async def login(self) -> None:
        if not self._username:
            raise NotAuthenticated(
                "the scheduler has no credentials: set [AccessClusterManager] username and"
                " password (a user of role agent) in Agent.cfg"
            )
        self.http.headers.pop("Authorization", None)
        body = {"username": self._username, "password": self._password}
        reply = await self._send("POST", paths.TOKEN, json=body)
        self.http.headers["Authorization"] = f"Bearer {reply.json()['token']}"

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            reply = await self.http.request(
                method,
                path,
                json=json,
                params=params,
                timeout=httpx.Timeout(timeout or self._timeout, connect=5.0),
            )
        except httpx.TimeoutException as exc:
            raise Unavailable(f"the cluster manager at {self.base_url} did not answer") from exc
        except httpx.TransportError as exc:
            raise Unavailable(
                f"cannot reach the cluster manager at {self.base_url}: {exc}"
            ) from exc
        if reply.status_code >= 400:
            raise _error(reply)
        return reply

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if "Authorization" not in self.http.headers:
            await self.login()
        try:
            return await self._send(method, path, **kwargs)
        except NotAuthenticated:
            await self.login()
            return await self._send(method, path, **kwargs)

    async def _get(self, adapter: TypeAdapter[T], path: str, **kwargs: Any) -> T:
        reply = await self._call("GET", path, **kwargs)
        return _parse(adapter, reply)

    # --- reading ----------------------------------------------------------------------

    async def hosts(self) -> list[HostOut]:
        return await self._get(_HOSTS, paths.HOSTS)

    async def instances(self) -> list[InstanceOut]:
        """Every instance, read in pages of ``PAGE`` by id."""
        out: list[InstanceOut] = []
        after = 0
        while True:
            page = await self._get(
                _INSTANCES, paths.INSTANCES, params={"after": after, "limit": PAGE}
            )
            out.extend(page)
            if len(page) < PAGE:
                return out
            after = page[-1].id

    async def priorities(self) -> dict[int, int]:
        """User id -> priority (SLA@SOI ``registerUser --priority``)."""
        return {u.id: u.priority for u in await self._get(_USERS, paths.USERS)}

    async def changes(self, after: int, timeout: float) -> int:
        """The change feed's version once it differs from ``after`` (or after ``timeout``)."""
        reply = await self._get(
            _CHANGES,
            paths.INSTANCE_CHANGES,
            params={"after": max(after, 0), "timeout": max(timeout, 0.0)},
            timeout=timeout + self._timeout,
        )
        return reply.version

    # --- acting -----------------------------------------------------------------------

    def _action(self, ref: int | str, action: str) -> str:
        return paths.INSTANCE_ACTION.format(ref=ref, action=action)

    async def activate(self, ref: int | str, host: int | str) -> InstanceOut:
        reply = await self._call("POST", self._action(ref, "activate"), json={"host": str(host)})
        return _parse(_INSTANCE, reply)

    async def activate_group(self, placements: list[tuple[int, int]]) -> list[InstanceOut]:
        """Place every member of a group in one transaction (all or nothing, ADR 0009)."""
        body = {"placements": [{"instance": str(i), "host": str(h)} for i, h in placements]}
        wait = self._timeout + GROUP_SECONDS_PER_MEMBER * len(placements)
        reply = await self._call("POST", ACTIVATE_GROUP, json=body, timeout=wait)
        return _parse(_INSTANCES, reply)

    async def hold(self, ref: int | str, reason: str) -> InstanceOut:
        reply = await self._call("POST", self._action(ref, "hold"), json={"reason": reason})
        return _parse(_INSTANCE, reply)

    async def migrate(self, ref: int | str, host: int | str) -> InstanceOut:
        reply = await self._call(
            "POST", self._action(ref, "migrate"), json={"targetHost": str(host)}
        )
        return _parse(_INSTANCE, reply)

    async def close(self) -> None:
        await self.http.aclose()


def _parse(adapter: TypeAdapter[T], reply: httpx.Response) -> T:
    try:
        return adapter.validate_json(reply.content)
    except ValidationError as exc:
        raise BackendFailure(
            f"the cluster manager sent a malformed answer to {reply.request.url.path}"
        ) from exc


def _error(reply: httpx.Response) -> TashiError:
    try:
        body = reply.json()["error"]
        return error_class(str(body["code"]))(str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return BackendFailure(
            f"the cluster manager answered {reply.status_code}: {reply.text[:200]}"
        )
