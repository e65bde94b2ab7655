"""The HTTP seam of the one API client: error decoding, lazy login, one re-login, and transport
failures, through the synchronous facade the CLI uses.

These exercise ``apiclient/connection.py``'s and ``errors.py``'s own logic with hand-made HTTP
answers (``httpx.MockTransport``); what the real app answers is covered by
``test_apiclient_contract.py``, a real cluster manager by ``tests/client/test_client_live.py``.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tashi.apiclient.client import ApiClient
from tashi.client.sdk import TashiClient, base_url
from tashi.domain.errors import (
    BackendFailure,
    InvalidState,
    NotAuthenticated,
    NotFound,
    TashiError,
    Unavailable,
)

USER = {"id": 2, "name": "alice", "role": "user", "priority": 0, "createdAt": None}
TOKEN = {"token": "t-1", "expiresAt": "2030-01-01T00:00:00Z", "user": USER}


def client(handler: httpx.MockTransport, **kw: object) -> TashiClient:
    return TashiClient("http://cm:9882", transport=handler, **kw)  # type: ignore[arg-type]


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def test_error_body_becomes_its_category() -> None:
    tashi = client(
        httpx.MockTransport(lambda r: error(404, "not_found", "no instance 'x'")), token="t"
    )
    with pytest.raises(NotFound, match="no instance 'x'"):
        tashi.get_instance("x")
    tashi = client(httpx.MockTransport(lambda r: error(409, "state_conflict", "lost")), token="t")
    with pytest.raises(InvalidState):
        tashi.pause_vm("x")


@pytest.mark.parametrize(
    ("response", "kind", "says"),
    [
        (httpx.Response(502, text="<html>Bad gateway</html>"), BackendFailure, "HTTP 502"),
        (httpx.Response(404, json={"detail": "Not Found"}), NotFound, "HTTP 404 from GET"),
        (httpx.Response(418, text=""), TashiError, "HTTP 418"),
        (httpx.Response(200, text="not json"), BackendFailure, "not JSON"),
        (httpx.Response(200, json={"hosts": []}), BackendFailure, "list of HostOut"),
    ],
)
def test_answers_that_are_not_tashi_shaped(
    response: httpx.Response, kind: type[TashiError], says: str
) -> None:
    tashi = client(httpx.MockTransport(lambda r: response), token="t")
    with pytest.raises(kind, match=says):
        tashi.get_hosts()


def test_an_answer_of_another_shape_is_a_backend_failure() -> None:
    tashi = client(httpx.MockTransport(lambda r: httpx.Response(200, json={"id": "x"})), token="t")
    with pytest.raises(BackendFailure, match="does not match HostOut"):
        tashi.get_host("x")


def test_logs_in_lazily_then_sends_the_bearer_token() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization")))
        if request.url.path == "/v1/auth/token":
            return httpx.Response(200, json=TOKEN)
        return httpx.Response(200, json=[])

    tashi = client(httpx.MockTransport(handler), username="alice", password="pw-12345678")
    assert tashi.get_hosts() == []
    assert tashi.get_networks() == []
    assert tashi.whoami().name == "alice"  # known from the login: no request
    assert seen == [
        ("POST", "/v1/auth/token", None),
        ("GET", "/v1/hosts", "Bearer t-1"),
        ("GET", "/v1/networks", "Bearer t-1"),
    ]


def test_an_expired_token_of_our_own_is_renewed_once() -> None:
    logins = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth/token":
            logins.append(1)
            return httpx.Response(200, json=TOKEN)
        return error(401, "not_authenticated", "the token has expired")

    tashi = client(httpx.MockTransport(handler), username="alice", password="pw-12345678")
    with pytest.raises(NotAuthenticated, match="expired"):
        tashi.get_hosts()
    assert len(logins) == 2


def test_a_given_token_is_not_renewed() -> None:
    tashi = client(httpx.MockTransport(lambda r: error(401, "not_authenticated", "bad")), token="t")
    with pytest.raises(NotAuthenticated, match="bad"):
        tashi.get_hosts()


def test_timeouts_and_refusals_are_unavailable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    tashi = client(httpx.MockTransport(slow), token="t", timeout=2.5)
    with pytest.raises(Unavailable, match=r"did not answer within 2.5 s .*clusterManagerTimeout"):
        tashi.get_hosts()


def test_references_are_escaped_into_one_path_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return error(404, "not_found", "no")

    tashi = client(httpx.MockTransport(handler), token="t")
    with pytest.raises(NotFound):
        tashi.get_instance("../hosts/1")
    assert paths == ["/v1/instances/..%2Fhosts%2F1"]


def test_base_url_brackets_ipv6() -> None:
    assert base_url("::1", 9882) == "http://[::1]:9882"
    assert base_url("cm.example", 80) == "http://cm.example:80"


def test_calls_made_at_once_share_one_login() -> None:
    """Ten calls before the first token wait for one login (each logged in before, and the
    login throttle refused the sixth); after the token expires, one login again."""
    logins: list[int] = []
    expired = {"t-0"}

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth/token":
            logins.append(1)
            await asyncio.sleep(0)  # let the other calls reach the login meanwhile
            return httpx.Response(200, json={**TOKEN, "token": f"t-{len(logins) - 1}"})
        if request.headers.get("authorization", "").removeprefix("Bearer ") in expired:
            return error(401, "not_authenticated", "the token has expired")
        return httpx.Response(200, json=[])

    async def scenario() -> None:
        async with ApiClient("http://cm:9882", transport=httpx.MockTransport(handler),
                             username="alice", password="pw-12345678") as api:  # fmt: skip
            await asyncio.gather(*(api.get_networks() for _ in range(10)))
            assert len(logins) == 2  # t-0 for all ten; expired: t-1 for all ten, once

    asyncio.run(scenario())
