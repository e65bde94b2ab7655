"""``RequestLimits`` as a bare ASGI middleware: what it lets through, what it refuses, and that a
refused body is not read (each test counts what its ``receive`` handed out)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from tashi.web.limits import HttpLimits, RequestLimits

CAP = 1 << 20
CHUNK = 64 * 1024
LIMITS = HttpLimits(max_body=CAP, head_timeout=10, body_timeout=30, max_connections=10)


@dataclass
class Client:
    """One request's side of the ASGI conversation: chunks to hand out, what came back."""

    chunks: Iterator[bytes]
    pulled: int = 0  # bytes of body handed to the server
    receives: int = 0
    sent: list[Message] = field(default_factory=list)

    async def receive(self) -> Message:
        self.receives += 1
        chunk = next(self.chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def error(self) -> dict[str, str]:
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        error: dict[str, str] = json.loads(body)["error"]
        return error


def endless() -> Iterator[bytes]:
    block = b"x" * CHUNK
    while True:
        yield block


def scope(length: int | None = None) -> Scope:
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": "/v1/x", "headers": headers}


async def read_all(receive: Receive) -> int:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return size


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body and answers its size."""
    size = await read_all(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def like_fastapi(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that turns any failure to read the body into its own 400, as FastAPI does."""
    try:
        await read_all(receive)
    except Exception:  # noqa: BLE001  (what FastAPI does, the behaviour under test)
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"There was an error parsing the body"})


def run(
    app: Any,
    client: Client,
    request: Scope,
    limits: HttpLimits = LIMITS,
    monotonic: Callable[[], float] | None = None,
) -> Client:
    kwargs = {} if monotonic is None else {"monotonic": monotonic}
    middleware = RequestLimits(app, limits, **kwargs)
    asyncio.run(middleware(request, client.receive, client.send))
    return client


def test_a_declared_length_over_the_cap_is_refused_unread() -> None:
    called = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    client = run(app, Client(endless()), scope(length=300 * 2**20))
    assert client.status == 413
    assert client.receives == 0 and client.pulled == 0
    assert called == []
    assert client.headers[b"connection"] == b"close"
    assert client.headers[b"content-type"] == b"application/json"
    error = client.error()
    assert error["code"] == "too_large"
    assert "314572800" in error["message"] and "maxRequestBody" in error["message"]


def test_a_streamed_body_is_cut_just_past_the_cap() -> None:
    client = run(echo, Client(endless()), scope())
    assert client.status == 413
    assert client.error()["code"] == "too_large"
    assert CAP < client.pulled <= CAP + CHUNK


def test_the_apps_own_answer_to_a_refused_body_is_replaced() -> None:
    client = run(like_fastapi, Client(endless()), scope())
    assert client.status == 413
    assert len(client.sent) == 2  # the app's 400 never went out
    assert client.pulled <= CAP + CHUNK


def test_a_body_up_to_the_cap_reaches_the_app() -> None:
    chunks = iter([b"x" * CHUNK] * (CAP // CHUNK))
    client = run(echo, Client(chunks), scope(length=CAP))
    assert client.status == 200
    assert client.sent[1]["body"] == str(CAP).encode()


def test_a_body_that_does_not_arrive_in_time_is_answered_408() -> None:
    async def hang(scope: Scope, receive: Receive, send: Send) -> None:
        await read_all(receive)

    class Stalled(Client):
        async def receive(self) -> Message:
            self.receives += 1
            await asyncio.Event().wait()  # a client that never sends its body
            raise AssertionError("unreachable")

    quick = HttpLimits(max_body=CAP, head_timeout=10, body_timeout=0.05, max_connections=10)
    client = run(hang, Stalled(iter(())), scope(length=10), limits=quick)
    assert client.status == 408
    error = client.error()
    assert error["code"] == "request_timeout"
    assert "requestBodyTimeout" in error["message"]


def test_the_body_deadline_counts_from_the_request_start() -> None:
    times = iter([0.0, 10.0, 29.0, 31.0])  # the guard's start, then one reading per receive
    chunks = iter([b"a" * 100, b"b" * 100, b"c" * 100])
    client = run(echo, Client(chunks), scope(), monotonic=lambda: next(times))
    assert client.status == 408
    assert client.pulled == 200  # the third chunk was past the deadline: never taken


def test_no_deadline_once_the_body_is_in() -> None:
    """After the body, an app's receive waits for a disconnect (a long poll): not a timeout."""
    times = iter([0.0, 1.0])  # a third reading would raise StopIteration

    async def long_poll(scope: Scope, receive: Receive, send: Send) -> None:
        await read_all(receive)
        assert (await receive())["type"] == "http.request"  # passed through, no deadline
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = run(long_poll, Client(iter(())), scope(length=0), monotonic=lambda: next(times))
    assert client.status == 200


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_other_scopes_pass_through(kind: str) -> None:
    seen = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    run(app, Client(iter(())), {"type": kind})
    assert seen == [kind]
