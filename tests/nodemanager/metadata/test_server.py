"""The metadata listener's HTTP framing over a real socket (on loopback, with the guest chosen by
a stand-in for the connection's mark): keep-alive, HEAD, HTTP/1.0, the token's hop limit, and
requests it refuses."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tashi.nodemanager.metadata import server as server_module
from tashi.nodemanager.metadata.answers import Answers
from tashi.nodemanager.metadata.server import MetadataServer
from tashi.nodemanager.metadata.tokens import Tokens
from tests.nodemanager.metadata.guests import guest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    guests = {1: guest(42)}
    served = MetadataServer(
        Answers(Tokens(b"k" * 32, lambda: 1e9)), guests.get, identify=lambda sock: 1
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    await served.start(sock)
    try:
        yield sock.getsockname()[1]
    finally:
        await served.close()


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(5):
            return await reader.read()  # until the server closes
    except ConnectionResetError:  # closed unread: nothing was answered
        return b""
    finally:
        writer.close()


async def test_keep_alive_answers_each_request_on_one_connection(port: int) -> None:
    out = await exchange(
        port,
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"
        b"HEAD /latest/meta-data/local-ipv4 HTTP/1.1\r\n\r\n"
        b"GET /latest/meta-data/nothing HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    parts = out.split(b"HTTP/1.1 ")
    assert parts[1].startswith(b"200 OK") and parts[1].endswith(b"\r\n\r\ni-0000000000000002a")
    assert parts[2].startswith(b"200 OK") and b"Content-Length: 11\r\n" in parts[2]
    assert parts[2].endswith(b"\r\n\r\n")  # HEAD: the length of the body, not the body
    assert parts[3].startswith(b"404 Not Found") and b"Connection: close" in parts[3]


async def test_http_1_0_closes_after_one_answer(port: int) -> None:
    out = await exchange(port, b"GET /latest/meta-data/mac HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"\r\n\r\n52:54:00:aa:00:2a")
    assert b"Connection: close" in out


async def test_a_token_is_put_with_a_hop_limit_and_then_accepted(port: int) -> None:
    out = await exchange(
        port,
        b"PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 30\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert b"X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 30\r\n" in out
    token = out.split(b"\r\n\r\n", 1)[1]
    again = await exchange(
        port,
        b"GET /latest/meta-data/instance-id HTTP/1.1\r\nX-aws-ec2-metadata-token: "
        + token
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert again.endswith(b"i-0000000000000002a")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NONSENSE\r\n\r\n",
        b"GET /latest/ HTTP/2.0\r\n\r\n",
        b"GET /latest/ HTTP/1.1\r\nbroken header\r\n\r\n",
        b"PUT /latest/api/token HTTP/1.1\r\nContent-Length: 99999\r\n\r\n",
        b"PUT /latest/api/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
async def test_a_malformed_request_is_400_and_closed(port: int, request_bytes: bytes) -> None:
    out = await exchange(port, request_bytes)
    assert out.startswith(b"HTTP/1.1 400 Bad Request") and b"Connection: close" in out


async def test_a_head_over_the_limit_is_dropped(port: int) -> None:
    out = await exchange(
        port, b"GET /" + b"a" * (server_module.HEAD_LIMIT + 10) + b" HTTP/1.1\r\n\r\n"
    )
    assert out == b""


async def test_a_guest_opens_only_so_many_connections(port: int) -> None:
    held = [
        await asyncio.open_connection("127.0.0.1", port) for _ in range(server_module.PER_GUEST)
    ]
    try:
        await asyncio.sleep(0.1)
        assert await exchange(port, b"GET / HTTP/1.1\r\n\r\n") == b""
    finally:
        for _, writer in held:
            writer.close()
