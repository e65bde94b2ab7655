"""What a client may send one of Tashi's HTTP servers: the body cap and the body deadline.

``RequestLimits`` is a pure ASGI middleware, so every front-end (the REST API, the node API,
EC2 or OCCI later) wraps its app in the same piece:

- a request whose ``Content-Length`` passes ``max_body`` is answered **413** at once, before the
  app runs and before a byte of the body is read;
- a body without a length (chunked) is counted as the app pulls it, and answered 413 as soon as
  it passes ``max_body``: at most ``max_body`` plus one chunk is ever held;
- the whole body must arrive within ``body_timeout`` seconds of the request's start, or the
  request is answered **408** (a client dribbling its body a byte at a time holds a worker for
  that long, no longer).

Either answer is in the API's error format (``tashi.web.errors``) and closes the connection, so
whatever the client still sends is not read. The app never sees a refused body: its ``receive``
raises, and whatever it would answer (FastAPI makes it a 400) is replaced by the refusal, since
the answer has not started then. Why a middleware and not Starlette's ``max_body_size``: the
same error format and the deadline, in one piece a non-FastAPI front-end can reuse too.

The request's head (its size and how long it may take) is bounded one level below, in the
HTTP protocol: ``tashi.web.server``. Neighbours: ``errors`` (the format), ``server`` (uvicorn).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tashi.domain.errors import Busy, TashiError, TooLarge, TooSlow
from tashi.web.errors import error_body, headers_of, status_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The limits of one server (``maxRequestBody``, ``requestHeadTimeout``,
    ``requestBodyTimeout``, ``maxConnections`` of its section)."""

    max_body: int
    head_timeout: float
    body_timeout: float
    max_connections: int
    section: str = "the server's section"  # named in refusals, so an operator knows the knob
    max_requests: int = 1000
    #: path prefixes of requests admitted past ``max_requests`` (the cluster manager's node
    #: reports: at most one per host, and what keeps its leases)
    always: tuple[str, ...] = ()

    @classmethod
    def of(cls, section: ServerSection) -> HttpLimits:
        return cls(
            max_body=section.max_request_body,
            head_timeout=section.request_head_timeout,
            body_timeout=section.request_body_timeout,
            max_connections=section.max_connections,
            section=f"[{section.SECTION}]",
            max_requests=section.max_requests,
        )


class ServerSection(Protocol):
    """What ``HttpLimits.of`` reads: a settings section with the four options (both
    ``ClusterManagerServiceSettings`` and ``NodeManagerServiceSettings`` are one)."""

    SECTION: ClassVar[str]

    @property
    def max_request_body(self) -> int: ...

    @property
    def request_head_timeout(self) -> float: ...

    @property
    def request_body_timeout(self) -> float: ...

    @property
    def max_connections(self) -> int: ...

    @property
    def max_requests(self) -> int: ...


class _Refused(Exception):
    """Raised into the app from ``receive`` once its body is refused (never leaves here)."""


def refusal(error: TashiError) -> list[Message]:
    """The ASGI messages of an error answer that closes the connection."""
    body = orjson.dumps(error_body(error.code, error.message))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode(), v.encode()) for k, v in headers_of(error).items()),
    ]
    return [
        {"type": "http.response.start", "status": status_of(error), "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class RequestLimits:
    """The ASGI middleware; see the module doc. ``monotonic`` is injectable for tests."""

    def __init__(
        self,
        app: ASGIApp,
        limits: HttpLimits,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.limits = limits
        self.monotonic = monotonic
        self.in_progress = 0  # requests admitted and not yet answered (not those ``always``)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(self.limits.always):  # neither refused nor counted
            await self._admitted(scope, receive, send)
            return
        if self.in_progress >= self.limits.max_requests:
            await _Guard(self, scope, receive, send).refuse(busy(self.limits))
            return
        self.in_progress += 1
        try:
            await self._admitted(scope, receive, send)
        finally:
            self.in_progress -= 1

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = _Guard(self, scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.limits.max_body:
            await guard.refuse(too_large(self.limits, f"its Content-Length is {declared} bytes"))
            return
        try:
            await self.app(scope, guard.receive, guard.send)
        except _Refused:
            pass
        except Exception:
            if guard.failure is None or guard.started:
                raise
            # The app failed on the body we refused (FastAPI wraps it): the refusal answers.
            log.debug("%s %s: the app failed on a refused body", scope["method"], scope["path"])
        if guard.failure is not None and not guard.started:
            await guard.refuse(guard.failure)


def busy(limits: HttpLimits) -> Busy:
    return Busy(
        f"the server is busy: {limits.max_requests} requests are in progress (maxRequests in"
        f" {limits.section}); try again in a moment",
        retry_after=1.0,
    )


def too_large(limits: HttpLimits, what: str) -> TooLarge:
    return TooLarge(
        f"the request body is too large: {what}, this server accepts at most"
        f" {limits.max_body} (maxRequestBody in {limits.section})"
    )


def too_slow(limits: HttpLimits) -> TooSlow:
    return TooSlow(
        f"the request body did not arrive within {limits.body_timeout:g} s"
        f" (requestBodyTimeout in {limits.section})"
    )


class _Guard:
    """One request's ``receive`` and ``send``, counting and timing its body."""

    def __init__(self, owner: RequestLimits, scope: Scope, receive: Receive, send: Send) -> None:
        self._limits = owner.limits
        self._monotonic = owner.monotonic
        self._scope = scope
        self._receive = receive
        self._send = send
        self._deadline = owner.monotonic() + owner.limits.body_timeout
        self._received = 0
        self._body_done = False
        self.failure: TashiError | None = None
        self.started = False  # the app started its answer (it cannot be replaced any more)
        self.refused = False  # our refusal went out

    async def receive(self) -> Message:
        if self.failure is not None:
            raise _Refused
        if self._body_done:  # later receives only wait for a disconnect: no deadline
            return await self._receive()
        remaining = self._deadline - self._monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):  # no task per receive, as wait_for makes
                message = await self._receive()
        except TimeoutError:
            self.failure = too_slow(self._limits)
            raise _Refused from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            self._body_done = not message.get("more_body", False)
            if self._received > self._limits.max_body:
                self.failure = too_large(self._limits, f"{self._received} bytes sent so far")
                raise _Refused
        return message

    async def send(self, message: Message) -> None:
        if self.failure is not None and not self.started:
            return  # the app's answer to a refused body is replaced by the refusal
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def refuse(self, error: TashiError) -> None:
        if self.refused:
            return
        self.refused = True
        # debug only: a flood of refusals must not flood the log (/metrics counts them by status)
        log.debug(
            "refused %s %s from %s: %s",
            self._scope["method"],
            self._scope["path"],
            _client(self._scope),
            error.message,
        )
        for message in refusal(error):
            await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP parser refuses a malformed length before we run
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
