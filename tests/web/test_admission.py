"""Overload (issue 25.7): past ``maxRequests`` in progress a server answers 503 with
Retry-After instead of queueing, except the paths it always admits (the cluster manager's node
reports); past ``maxConnections`` open, a new connection is answered 503 and closed, while the
requests on the connections already open go on (uvicorn's ``limit_concurrency`` refused every
request once idle keep-alive connections alone reached it)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tashi.daemons.cm import second_listener
from tashi.runtime.ports import free_port
from tashi.web.limits import HttpLimits, RequestLimits

pytestmark = pytest.mark.anyio
LIMITS = HttpLimits(
    max_body=1 << 20, head_timeout=10, body_timeout=30, max_connections=10, max_requests=2
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Held:
    """An app whose requests wait until released."""

    def __init__(self) -> None:
        self.inside = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.inside += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


async def request(app: RequestLimits, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    await app(scope, receive, send)  # type: ignore[arg-type]
    body = b"".join(m.get("body", b"") for m in sent[1:])  # type: ignore[misc]
    return int(sent[0]["status"]), dict(sent[0]["headers"]), body  # type: ignore[arg-type, call-overload]


async def test_past_max_requests_a_request_is_shed_but_node_reports_are_admitted() -> None:
    held = Held()
    app = RequestLimits(held, replace(LIMITS, always=("/v1/nodes",)))
    first = [asyncio.create_task(request(app, "/v1/instances")) for _ in range(2)]
    async with asyncio.timeout(10):
        while held.inside < 2:
            await asyncio.sleep(0)
    status, headers, body = await request(app, "/v1/instances")
    assert (status, headers[b"retry-after"]) == (503, b"1")
    error = json.loads(body)["error"]
    assert error["code"] == "busy" and "maxRequests" in error["message"]
    report = asyncio.create_task(request(app, "/v1/nodes/7/heartbeat"))
    async with asyncio.timeout(10):
        while held.inside < 3:
            await asyncio.sleep(0)
    assert app.in_progress == 2  # node reports take no user's room
    held.release.set()
    assert [(await t)[0] for t in (*first, report)] == [200, 200, 200]
    assert app.in_progress == 0
    assert (await request(app, "/v1/instances"))[0] == 200  # room again


async def test_past_max_connections_a_new_connection_is_refused_and_the_open_ones_go_on() -> None:
    held = Held()
    held.release.set()
    port = free_port()
    limits = replace(LIMITS, max_connections=2)
    listener = second_listener(held, "the test server", "127.0.0.1", port, limits)  # type: ignore[arg-type]
    assert listener is not None
    serving = asyncio.create_task(listener.serve())
    try:
        url = f"http://127.0.0.1:{port}/"
        clients = [httpx.AsyncClient(timeout=10) for _ in range(3)]
        try:
            for client in clients[:2]:  # two kept-alive connections
                assert (await client.get(url)).status_code == 200
            refused = await clients[2].get(url)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "busy"
            for client in clients[:2]:  # more requests on the open ones: served
                assert (await client.get(url)).status_code == 200
        finally:
            for client in clients:
                await client.aclose()
    finally:
        listener.stop()
        await asyncio.wait_for(serving, 10)
