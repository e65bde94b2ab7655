"""``tashi.web.stop.Server`` stopping, in this process on a free port: its ``stopping`` callbacks
answer a long-poll at once, a request still running after the grace is answered ``unanswered``
(not cut), and a SIGTERM stops the server without being raised again afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from tashi.clustermanager.watch import ChangeFeed
from tashi.runtime.ports import free_port
from tashi.web.limits import HttpLimits
from tashi.web.stop import Server

pytestmark = pytest.mark.anyio
LIMITS = HttpLimits(max_body=1 << 20, head_timeout=10, body_timeout=30, max_connections=10)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class App:
    """``/poll`` long-polls ``feed``; ``/slow`` never finishes by itself."""

    def __init__(self) -> None:
        self.feed = ChangeFeed()
        self.waiting = asyncio.Event()  # a request is being held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.waiting.set()
        if scope["path"] == "/poll":
            version = await self.feed.wait(0, 30.0)
        else:
            await asyncio.Event().wait()
        body = orjson.dumps({"version": version})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serving(app: App, grace: int) -> AsyncIterator[tuple[Server, str]]:
    port = free_port()
    server = Server(
        app,
        what="the test server",
        host="127.0.0.1",
        port=port,
        limits=LIMITS,
        stopping=[app.feed.close],
        grace=grace,
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)  # polling the condition just above
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def stop_while_held(
    server: Server, app: App, url: str, path: str
) -> tuple[httpx.Response, float]:
    async with httpx.AsyncClient(timeout=30) as client:
        request = asyncio.create_task(client.get(url + path))
        await asyncio.wait_for(app.waiting.wait(), 10)
        started = time.monotonic()
        server.should_exit = True  # what SIGTERM does (``handle_exit``)
        reply = await request
        return reply, time.monotonic() - started


async def test_a_long_poll_is_answered_the_moment_the_server_stops() -> None:
    app = App()
    async with serving(app, grace=5) as (server, url):
        reply, took = await stop_while_held(server, app, url, "/poll")
    assert reply.status_code == 200
    assert reply.json() == {"version": 0}  # nothing changed: the poll simply ends
    assert reply.headers["connection"] == "close"
    assert took < 2.0, f"the long-poll was answered {took:.2f} s after the stop (grace 5 s)"


async def test_a_request_still_running_after_the_grace_is_answered_unanswered() -> None:
    app = App()
    async with serving(app, grace=1) as (server, url):
        reply, took = await stop_while_held(server, app, url, "/slow")
    assert reply.status_code == 503
    error = reply.json()["error"]
    assert error["code"] == "unanswered"
    assert "stopped before it finished" in error["message"]
    assert error["message"].startswith("the test server")
    assert 1.0 <= took < 3.0


async def test_a_later_long_poll_on_a_closed_feed_is_answered_at_once() -> None:
    feed = ChangeFeed()
    feed.close()
    assert await asyncio.wait_for(feed.wait(0, 30.0), 1) == 0


async def test_sigterm_stops_the_server_and_is_not_raised_again() -> None:
    received: list[int] = []

    def record(sig: int, frame: FrameType | None) -> None:
        received.append(sig)

    previous = signal.signal(signal.SIGTERM, record)
    try:
        app = App()
        async with serving(app, grace=1) as (server, _url):
            os.kill(os.getpid(), signal.SIGTERM)
            async with asyncio.timeout(10):
                while not server.should_exit:
                    await asyncio.sleep(0.01)  # polling the condition just above
        # uvicorn's own Server would have raised SIGTERM again here, into ``record``
        assert received == []
        assert signal.getsignal(signal.SIGTERM) is record  # what was there is back
    finally:
        signal.signal(signal.SIGTERM, previous)
