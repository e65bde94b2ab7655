"""What the scheduling agent asks of the cluster manager, answered by the one API client.

``CmClient`` is the agent's narrow view (``agent.py`` calls nothing else; a test can answer it
in process) over ``tashi.apiclient.ApiClient``, which does the HTTP, the agent's login (once
more when its token has expired) and the error mapping: a refused claim is
``InsufficientResources``, an instance another scheduler placed ``InvalidState``, a cluster
manager that does not answer ``Unavailable``. Connections give up after ``CONNECT_SECONDS``
whatever the wait for an answer. ``http`` is what hooks get in their ``HookContext``.
"""

from __future__ import annotations

import httpx

from tashi.api.schemas import HostOut, InstanceOut, TokenOut
from tashi.apiclient.client import GROUP_SECONDS_PER_MEMBER, PAGE, ApiClient

__all__ = ["GROUP_SECONDS_PER_MEMBER", "PAGE", "CmClient"]

CONNECT_SECONDS = 5.0


class CmClient:
    def __init__(
        self,
        base_url: str,
        *,
        username: str = "",
        password: str = "",
        token: str = "",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api = ApiClient(
            base_url,
            username=username or None,
            password=password if username else None,
            token=token or None,
            timeout=timeout,
            connect_timeout=CONNECT_SECONDS,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return self.api.base_url

    @property
    def http(self) -> httpx.AsyncClient:
        """The authenticated ``httpx.AsyncClient`` underneath, for the hooks."""
        return self.api.http

    async def login(self) -> TokenOut:
        return await self.api.login()

    async def close(self) -> None:
        await self.api.close()

    # --- reading ----------------------------------------------------------------------

    async def hosts(self) -> list[HostOut]:
        return await self.api.get_hosts()

    async def instances(self) -> list[InstanceOut]:
        """Every instance, read in pages of ``PAGE`` by id."""
        return await self.api.all_instances()

    async def priorities(self) -> dict[int, int]:
        """User id -> priority (SLA@SOI ``registerUser --priority``)."""
        return {u.id: u.priority for u in await self.api.get_users()}

    async def changes(self, after: int, timeout: float) -> int:
        """The change feed's version once it differs from ``after`` (or after ``timeout``)."""
        return (await self.api.changes(after, timeout)).version

    # --- acting -----------------------------------------------------------------------

    async def activate(self, ref: int | str, host: int | str) -> InstanceOut:
        return await self.api.activate_vm(ref, host)

    async def activate_group(self, placements: list[tuple[int, int]]) -> list[InstanceOut]:
        """Place every member of a group in one transaction (all or nothing, ADR 0009)."""
        return await self.api.activate_group(list(placements))

    async def hold(self, ref: int | str, reason: str) -> InstanceOut:
        return await self.api.hold_vm(ref, reason)

    async def migrate(self, ref: int | str, host: int | str) -> InstanceOut:
        return await self.api.migrate_vm(ref, host)
