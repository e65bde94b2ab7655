"""The node contract's HTTP seam: its clients verify TLS, from one context per process."""

from __future__ import annotations

import ssl

import httpx
import pytest

from tashi.nodeapi import transport
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
