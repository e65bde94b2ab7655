"""The one client's error mapping where the real app cannot be made to answer so: a server-side
failure's request id, a cluster manager that cannot be reached, and the synchronous facade
called from code that runs an event loop of its own."""

from __future__ import annotations

import httpx
import pytest

from tashi.api.schemas import ErrorBody, ErrorOut
from tashi.apiclient import ApiClient
from tashi.apiclient.errors import WHERE_TO_POINT
from tashi.client.sdk import TashiClient
from tashi.domain.errors import BackendFailure, Unavailable
from tashi.runtime.ports import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def failing(request: httpx.Request) -> httpx.Response:
    body = ErrorBody(code="backend_failure", message="database unavailable", requestId="r-7")
    return httpx.Response(500, content=ErrorOut(error=body).model_dump_json())


async def test_a_server_failure_names_its_request_id() -> None:
    async with ApiClient("http://cm", token="t", transport=httpx.MockTransport(failing)) as c:
        with pytest.raises(BackendFailure, match=r"^database unavailable \(request r-7\)$"):
            await c.get_hosts()


async def test_a_cluster_manager_not_listening_is_unavailable_with_where_to_point() -> None:
    async with ApiClient(f"http://127.0.0.1:{free_port()}", token="t", timeout=2.0) as c:
        with pytest.raises(Unavailable, match="cannot reach") as caught:
            await c.get_hosts()
    assert str(caught.value).endswith(WHERE_TO_POINT)


async def test_the_synchronous_client_works_inside_a_running_event_loop() -> None:
    tashi = TashiClient("http://cm", token="t", transport=httpx.MockTransport(failing))
    with tashi, pytest.raises(BackendFailure, match="r-7"):
        tashi.get_hosts()
