"""Uvicorn as every Tashi server runs it, and the HTTP protocol that bounds a request's head.

Uvicorn bounds neither the size of a request's head (with httptools a header line grows as long
as a client sends it) nor the time it may take: its keep-alive timer is cancelled by any byte, so
a client that sends one byte of headers every few seconds holds its connection for ever. Hence
``GuardedHttpProtocol``, its httptools protocol with two more rules:

- the line and headers of a request must be complete within ``requestHeadTimeout`` seconds, from
  the connection or from the end of the previous answer on it; otherwise the connection is closed
  (with a 408 in the API's error format if part of a head had come);
- a head larger than ``MAX_HEAD`` bytes is answered 431 and the connection closed;

and one setting: ``TCP_NODELAY`` on every connection. Uvicorn writes an answer's head and body
in two writes; on a socket with Nagle's algorithm on, the body then waits for the client's
acknowledgement of the head, which Linux delays by up to 40 ms. The event loop sets it on the
connections of a server it binds itself, but not on those of a socket it is given (the EC2 and
OCCI listeners, ``daemons/cm.py``): every EC2 answer took 40 ms more than its work
(``docs/ec2.md``).

Bodies are the business of ``tashi.web.limits`` (the cap and the deadline, as an ASGI middleware).
The protocol also caps the connections open at once (``maxConnections``: past it a new one is
answered 503 and closed, so connections held open cannot pile up without bound). Not uvicorn's
``limit_concurrency``: that counts idle keep-alive connections and requests against one number
and answers every request 503 once the connections alone reach it, so a cluster manager with
more hosts than the limit (each node manager keeps a connection) would refuse every heartbeat.
Requests in progress are capped by ``tashi.web.limits`` (``maxRequests``). ``server_config``
also sets uvicorn's keep-alive of idle connections, and no WebSocket upgrade (no Tashi API has
one).
Uvicorn's ``h11_max_incomplete_event_size`` is not used: the protocol here is httptools' with the
head cap above, for either parser's sake the one rule.
"""

from __future__ import annotations

import asyncio
import socket
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tashi.domain.errors import Busy, TashiError, TooLarge, TooSlow
from tashi.web.errors import error_body
from tashi.web.limits import HttpLimits

MAX_HEAD = 64 * 1024  # bytes of request line and headers; Tashi's requests use under 2 KiB
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open (uvicorn's default)


def raw_answer(status: int, error: TashiError) -> bytes:
    """A complete HTTP/1.1 answer in the API's error format that closes the connection, for
    the protocol to write where no ASGI app is involved."""
    body = orjson.dumps(error_body(error.code, error.message))
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Nagle's algorithm off on a TCP connection (the module doc says why)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GuardedHttpProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol, with the head deadline and size cap of the module doc.

    ``head_timeout`` is set per server by ``server_config`` (uvicorn makes one instance per
    connection from the class it is given)."""

    head_timeout: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._awaiting_head = True  # bytes now belong to the head of a request to come

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        if len(self.connections) > self.max_connections:
            message = f"the server has {self.max_connections} connections open (maxConnections)"
            self._close(503, Busy(message))
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_head and self._head_bytes > MAX_HEAD:
            message = f"the request's line and headers are over {MAX_HEAD} bytes"
            self._close(431, TooLarge(message))

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._stop_clock()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What follows a whole request is the next one's head (pipelined): count it. Its clock
        # starts when this request is answered; a request may take long to answer.
        self._awaiting_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        idle = self.cycle is None or self.cycle.response_complete  # no pipelined request runs
        if idle and not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        self._stop_clock()
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _stop_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._head_bytes:  # an idle connection: nobody to answer
            self._close(0, None)
            return
        error = TooSlow(
            f"the request's line and headers did not arrive within {self.head_timeout:g} s"
            " (requestHeadTimeout)"
        )
        self._close(408, error)

    def _close(self, status: int, error: TashiError | None) -> None:
        self._stop_clock()
        if self.transport.is_closing():
            return
        if error is not None and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(raw_answer(status, error))
        self.transport.close()


def server_config(app: ASGIApp, *, host: str, port: int, limits: HttpLimits) -> uvicorn.Config:
    """The uvicorn configuration of one Tashi server (its app already wrapped in
    ``RequestLimits`` by its ``create_app``)."""

    class Protocol(GuardedHttpProtocol):
        head_timeout = limits.head_timeout
        max_connections = limits.max_connections

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=Protocol,
        ws="none",
        limit_concurrency=None,  # connections: the protocol; requests: ``RequestLimits``
        timeout_keep_alive=KEEP_ALIVE,
        access_log=False,
        log_config=None,
        lifespan="off",
    )
