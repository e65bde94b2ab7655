"""The node contract's HTTP seam: its clients verify TLS, from one context per process, and
tell a peer that could not be reached from one that took a request and never answered."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest

from tashi.domain.errors import Unanswered, Unavailable
from tashi.nodeapi import transport
from tashi.nodeapi.schemas import VmOut
from tashi.nodeapi.transport import Transport, tls_context

pytestmark = pytest.mark.anyio


def test_clients_verify_certificates_and_host_names() -> None:
    context = tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # a CA bundle, not an empty store


async def test_the_ca_bundle_is_read_once_for_every_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[ssl.SSLContext] = []
    real = httpx.create_ssl_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        made.append(real())
        return made[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    transport.tls_context.cache_clear()
    try:
        clients = [Transport(f"https://host{n}.example:9883", peer=f"host{n}") for n in range(3)]
        for client in clients:
            await client.close()
        assert len(made) == 1
    finally:
        transport.tls_context.cache_clear()


async def _peer(on_request: str) -> tuple[asyncio.Server, int]:
    """A peer on 127.0.0.1 that reads a request, then hangs up (``close``) or says nothing
    (``hang``)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if on_request == "hang":
                await reader.read()  # until the client gives up
        finally:  # hung up, or the client gave up: the server's side is ours to close
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("on_request", ["close", "hang"])
async def test_a_request_taken_and_never_answered_is_unanswered(on_request: str) -> None:
    server, port = await _peer(on_request)
    client = Transport(f"http://127.0.0.1:{port}", peer="host1")
    try:
        with pytest.raises(Unanswered, match="host1"):
            await client.call("POST", "/v1/vms/1/migrate", VmOut, timeout=0.5)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_a_peer_that_cannot_be_reached_is_only_unavailable() -> None:
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        client = Transport(f"http://127.0.0.1:{port}", peer="host1")
        try:
            with pytest.raises(Unavailable) as caught:
                await client.call("GET", "/v1/vms", VmOut)
        finally:
            await client.close()
    assert not isinstance(caught.value, Unanswered)


def test_a_pooled_connection_is_given_up_before_its_server_closes_it() -> None:
    # Reusing a connection just as the server's keep-alive closes it fails the request as
    # Unanswered (seen: a destroy in `bench ec2`); the client must let go first.
    from tashi.web.server import KEEP_ALIVE

    pool = Transport("http://127.0.0.1:9", peer="node")._http._transport._pool  # type: ignore[attr-defined]
    assert pool._keepalive_expiry < KEEP_ALIVE
    assert pool._max_connections == 100 and pool._max_keepalive_connections == 20
