"""A request id for every request a Tashi server answers, so that an answer and the log meet.

``RequestIds`` is a pure ASGI middleware, outside every other piece of an app. It takes the
request's ``X-Request-Id`` when it is sane (``SANE``: up to 64 letters, digits and ``.:_-``;
a proxy's or a peer's id, such as the one the cluster manager sends the node manager it calls),
or makes one, and puts it in the answer's ``X-Request-Id`` header. While the request runs the id
is ``current()`` (a context variable: tasks the request starts inherit it), so the error handlers
(``errors``) put it in error bodies and in the log line that holds what the caller is not told.

Neighbours: ``errors`` (the error format), ``limits`` (refusals, which carry the id too).
"""

from __future__ import annotations

import contextvars
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-Id"
SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("tashi_request_id")


def current() -> str | None:
    """The id of the request being served (``None`` outside one)."""
    return _current.get(None)


def new() -> str:
    return secrets.token_hex(8)


def accepted(value: str | None) -> str:
    """``value`` if it is a sane id, else a new one."""
    return value if value is not None and SANE.fullmatch(value) else new()


class RequestIds:
    """The ASGI middleware; see the module doc."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted(_header(scope, HEADER.lower().encode()))
        # Not reset afterwards: each request runs in a task of its own, and Starlette's handler
        # of unexpected errors, outside this middleware, still needs the id.
        _current.set(request_id)
        stamp = (HEADER.lower().encode(), request_id.encode())

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != stamp[0]]
                message = {**message, "headers": [*headers, stamp]}
            await send(message)

        await self.app(scope, receive, sending)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            try:
                return str(value.decode("ascii"))
            except UnicodeDecodeError:
                return None
    return None
