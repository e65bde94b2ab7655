"""The heartbeat's fast lane (ADR 0023): a heartbeat that says nothing new is answered before
FastAPI routes it.

Every host calls ``POST /v1/nodes/{id}/heartbeat`` every ``registerFrequency`` seconds, and
almost every call is a renewal (``clustermanager/hosts/book.py``). Through FastAPI a renewal
cost 2.5 ms of CPU, most of it spent routing, solving the route's dependencies and converting
fifteen reported instances into the domain's records that a renewal never reads. This ASGI
middleware, inside the request limits and ids, reads the body, validates what of it makes the
report's key (``schemas.HeartbeatKeyIn``: each VM's ids and state, not the instance it was
sent, in one call), authenticates the bearer token (``AuthService``, cached) and asks
``NodeReports.renew`` with that key alone. A report of the key was read whole when it was
settled; its later copies are renewed without reading the instances again.

It answers only renewals. Anything else (another route, a token or body the route would
refuse, a report that must go the whole way, a failure) is handed to the app untouched, with
the body it read given again, so the route answers it exactly as before, errors included.
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tashi.clustermanager.service import ClusterService
from tashi.domain.errors import TashiError
from tashi.frontends.rest.deps import bearer_token_of
from tashi.nodeapi import convert, paths
from tashi.nodeapi import schemas as s
from tashi.web.json import JsonResponse

_PATH = re.compile(
    "^" + re.escape(paths.NODE_HEARTBEAT).replace(r"\{host_id\}", "([0-9]{1,18})") + "$"
)


class HeartbeatLane:
    def __init__(self, app: ASGIApp, service: ClusterService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, more = await _read(receive)
        if not more:
            reply = await self._renewal(scope, int(match.group(1)), body)
            if reply is not None:
                await reply(scope, receive, send)
                return
        await self.app(scope, _again(body, more, receive), send)

    async def _renewal(self, scope: Scope, host_id: int, body: bytes) -> JsonResponse | None:
        headers = dict(scope["headers"])
        token = bearer_token_of(headers.get(b"authorization", b"").decode("latin-1"))
        if token is None:
            return None
        try:
            caller = await self.service.auth.authenticate(token)
            wire = s.HeartbeatKeyIn.model_validate_json(body)
            ack = await self.service.node_reports.renew(
                caller,
                host_id,
                convert.heartbeat_key(wire),
                load=wire.load,
                fenced=bool(wire.fenced),
                underlay=wire.underlay,
            )
        except (TashiError, ValidationError):
            return None  # the route answers it, with its own error
        if ack is None:
            return None
        return JsonResponse(convert.heartbeat_reply_wire(ack).model_dump())


async def _read(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body; or what was read before a message that is not a body part (a
    disconnect), with that message."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), message
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), None


def _again(body: bytes, more: Message | None, receive: Receive) -> Receive:
    """``receive`` that first gives the body read already (and the message after it)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if more is not None:
        pending = [{"type": "http.request", "body": body, "more_body": True}, more]

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
