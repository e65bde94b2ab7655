"""Fixtures shared by the scheduler's and the DHCP/DNS hook's tests (registered by both packages'
``conftest.py``): the anyio backend, and ``agent``, a ``CmClient`` logged in as the scheduler's
agent account on the module's ``cm`` cluster (each test module defines ``cm``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tashi.scheduler.cmclient import CmClient
from tests.e2e.harness import Cluster
from tests.scheduler.live import agent_client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def agent(cm: Cluster) -> AsyncIterator[CmClient]:
    client = agent_client(cm)
    await client.login()
    try:
        yield client
    finally:
        await client.close()
