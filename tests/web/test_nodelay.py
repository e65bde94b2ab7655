"""Every Tashi server's connections have Nagle's algorithm off (``tashi.web.server``), those of
a server given its socket too (the EC2 and OCCI listeners, ``daemons/cm.second_listener``):
otherwise an answer's body, written after its head, waits up to 40 ms for the client's delayed
acknowledgement of the head. In this process, on a free port; the connection's own socket is
read while its request is held."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tashi.daemons.cm import second_listener
from tashi.runtime.ports import free_port
from tashi.web.limits import HttpLimits

pytestmark = pytest.mark.anyio
LIMITS = HttpLimits(max_body=1 << 20, head_timeout=10, body_timeout=30, max_connections=10)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_listener_on_a_given_socket_sends_without_delay() -> None:
    held, release = asyncio.Event(), asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        held.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    port = free_port()
    listener = second_listener(app, "the test server", "127.0.0.1", port, LIMITS)  # type: ignore[arg-type]
    assert listener is not None
    serving = asyncio.create_task(listener.serve())
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/"))
            async with asyncio.timeout(10):
                await held.wait()
            [connection] = listener._server.server_state.connections
            sock = connection.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            release.set()
            assert (await answer).text == "done"
    finally:
        listener.stop()
        await asyncio.wait_for(serving, 10)
