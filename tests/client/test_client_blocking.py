"""The synchronous facade's event loop (``client/blocking.py``): results and errors come back to
the caller, and a call made on that loop itself is refused instead of waiting for ever."""

from __future__ import annotations

import httpx
import pytest

from tashi.client.blocking import run
from tashi.client.sdk import TashiClient
from tashi.domain.errors import NotFound


def not_found(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such host"}})


def test_results_and_errors_come_back_to_the_caller() -> None:
    async def two() -> int:
        return 2

    assert run(two()) == 2
    tashi = TashiClient("http://cm", token="t", transport=httpx.MockTransport(not_found))
    with tashi, pytest.raises(NotFound, match="no such host"):
        tashi.get_host("h9")


def test_a_call_on_the_client_loop_itself_is_refused() -> None:
    tashi = TashiClient("http://cm", token="t", transport=httpx.MockTransport(not_found))

    async def inside() -> None:
        tashi.get_hosts()

    with tashi, pytest.raises(RuntimeError, match="its own loop"):
        run(inside())
