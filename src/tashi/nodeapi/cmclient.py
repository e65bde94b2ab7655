"""The node manager's client of the cluster manager: log in, register, heartbeat, events.

It logs in with the node's credentials (a user of role ``node``) and logs in again once when
its token has expired.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from tashi.api import paths as public
from tashi.domain.errors import Dependency, NotAuthenticated
from tashi.domain.ids import HostId
from tashi.domain.nodes import Acknowledged, Heartbeat, NodeEvent, Registration
from tashi.nodeapi import convert, paths, timeouts
from tashi.nodeapi.schemas import EventsIn, EventsOut, HeartbeatOut, RegisterOut
from tashi.nodeapi.transport import Transport

M = TypeVar("M")


class _Login(BaseModel):
    username: str
    password: str


class _Token(BaseModel):
    token: str


class ClusterManagerClient:
    def __init__(self, base_url: str, *, username: str, password: str) -> None:
        self._transport = Transport(
            base_url, peer="the cluster manager", kind=Dependency.cluster_manager
        )
        self._login = _Login(username=username, password=password)

    async def _call(
        self, method: str, path: str, answer: type[M], body: BaseModel, timeout: float
    ) -> M:
        if self._transport.token is None:
            await self.login()
        try:
            return await self._transport.call(method, path, answer, body=body, timeout=timeout)
        except NotAuthenticated:
            await self.login()
            return await self._transport.call(method, path, answer, body=body, timeout=timeout)

    async def login(self) -> None:
        self._transport.token = None
        reply: Any = await self._transport.call(
            "POST", public.TOKEN, _Token, body=self._login, timeout=timeouts.REGISTER
        )
        self._transport.token = reply.token

    async def register(self, request: Registration) -> Acknowledged:
        body = convert.registration_wire(request)
        reply = await self._call("POST", paths.NODE_REGISTER, RegisterOut, body, timeouts.REGISTER)
        return convert.acknowledged(reply)

    async def heartbeat(self, host_id: HostId, report: Heartbeat) -> Acknowledged:
        path = paths.NODE_HEARTBEAT.format(host_id=host_id)
        body = convert.heartbeat_wire(report)
        return convert.acknowledged(
            await self._call("POST", path, HeartbeatOut, body, timeouts.HEARTBEAT)
        )

    async def events(self, host_id: HostId, events: list[NodeEvent]) -> int:
        """Send ``events``; how many the cluster manager accepted."""
        path = paths.NODE_EVENTS.format(host_id=host_id)
        body = EventsIn(events=[convert.event_wire(e) for e in events])
        return (await self._call("POST", path, EventsOut, body, timeouts.HEARTBEAT)).accepted

    async def close(self) -> None:
        await self._transport.close()
