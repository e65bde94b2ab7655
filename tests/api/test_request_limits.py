"""The body cap of ``[ClusterManagerService] maxRequestBody`` through the real HTTP app.

That a refused body is not read is shown where it can be measured: byte counts of a bare ASGI
conversation in ``tests/web/test_limits.py``, and a real ``tashi-cm``'s memory in
``tests/web/test_live_limits.py`` (the test client reads a whole body before the app runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api import paths
from tests.api.conftest import Api, start_api

MIB = 1 << 20


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Api]:
    yield from start_api("memory", tmp_path, max_request_body=4096)


def _login_body(padding: int) -> bytes:
    return b'{"username": "admin", "password": "' + b"p" * padding + b'"}'


def test_an_oversized_login_is_answered_413_in_the_error_format(api: Api) -> None:
    reply = api.http.post(
        paths.TOKEN, content=_login_body(2 * MIB), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413
    assert reply.headers["connection"] == "close"
    error = reply.json()["error"]
    assert error["code"] == "too_large"
    assert "1048576" in error["message"]
    assert "[ClusterManagerService]" in error["message"]


def test_a_chunked_oversized_body_is_answered_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b" " * MIB  # no Content-Length: sent chunked

    reply = api.call("POST", "/v1/instances", api.admin, content=chunks())
    assert "content-length" not in reply.request.headers
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "too_large"


def test_a_body_under_the_cap_reaches_the_route(api: Api) -> None:
    reply = api.http.post(
        paths.TOKEN, content=_login_body(MIB // 2), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 401  # judged by the route: a wrong password, not a refusal


def test_the_cap_is_the_configured_one(small: Api) -> None:
    ok = small.http.post(paths.TOKEN, json={"username": "admin", "password": "x" * 3000})
    assert ok.status_code == 401
    big = small.http.post(paths.TOKEN, json={"username": "admin", "password": "x" * 5000})
    assert big.status_code == 413
    assert "4096" in big.json()["error"]["message"]


def test_refusals_are_counted_in_metrics(small: Api) -> None:
    small.http.post(paths.TOKEN, content=b"x" * 5000)
    assert (
        'tashi_http_requests_total{method="POST",status="413"} 1'
        in small.http.get(paths.METRICS).text
    )
