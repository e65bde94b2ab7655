"""The scheduler's client of the cluster manager: how long it waits for what."""

from __future__ import annotations

import httpx
import pytest

from tashi.scheduler.cmclient import GROUP_SECONDS_PER_MEMBER, CmClient

pytestmark = pytest.mark.anyio


def recording_client(waits: list[float]) -> CmClient:
    def answer(request: httpx.Request) -> httpx.Response:
        waits.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json=[])

    return CmClient(
        "http://cm.test:9882", token="t0ken", timeout=30.0, transport=httpx.MockTransport(answer)
    )


async def test_a_group_activation_waits_longer_the_more_members_it_starts() -> None:
    waits: list[float] = []
    client = recording_client(waits)
    try:
        await client.activate_group([(1, 1)])
        await client.activate_group([(n, n % 10 + 1) for n in range(1, 101)])
    finally:
        await client.close()
    one, hundred = waits
    assert one == pytest.approx(30.0 + GROUP_SECONDS_PER_MEMBER)
    assert hundred == pytest.approx(30.0 + 100 * GROUP_SECONDS_PER_MEMBER)
    assert hundred >= 100.0
