"""Errors tell callers what they need and nothing more (issue 26, point 7), through the real
cluster-manager app over real failures.

Each answer carries a request id, in its ``X-Request-Id`` header and its error body; a failure
of something Tashi depends on is told as a fixed sentence, and what it does not say (the
database's words, a node manager's address) is in the log under that id. The failures are real:
the SQLite files overwritten under the running app (the tests run as root, who reads a file of
mode 000, so unreadable here means not a database any more), and a node manager registered at a
port nobody listens on. ``tests/e2e/test_error_privacy.py`` does the same to real daemons on a
stopped PostgreSQL server, whose words name its socket's path and port.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from tashi.api.schemas import ErrorOut
from tashi.clustermanager.hosts.gateway import HttpNodeGateway
from tashi.domain.states import InstanceState
from tashi.web import errors
from tashi.web.requestids import SANE, RequestIds
from tests.api.conftest import Api, start_api
from tests.api.test_instances import create, force_state
from tests.api.test_nodes import register

#: what no error body may carry: a path, an address or port, a traceback
LEAKS = {
    "a path": re.compile(r"/[\w.-]"),
    "an IPv4 address": re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b"),
    "a port": re.compile(r":\d{2,5}\b"),
    "a traceback": re.compile(r"Traceback|File \"|line \d+"),
}


def discreet(reply: httpx.Response, *secrets: str) -> dict[str, Any]:
    """The error of ``reply``, checked: it names its request id (in the body and the header)
    and carries none of ``LEAKS`` nor of ``secrets`` (a host name, a port, a file name)."""
    ErrorOut.model_validate(reply.json())  # the shape the OpenAPI document and the SDK know
    error: dict[str, Any] = reply.json()["error"]
    assert error["requestId"] == reply.headers["x-request-id"], reply.text
    assert SANE.fullmatch(error["requestId"])
    text = " ".join(str(v) for k, v in error.items() if k != "requestId")
    for what, pattern in LEAKS.items():
        assert not pattern.search(text), f"{what} in {reply.text}"
    for secret in (socket.gethostname(), "localhost", *secrets):
        assert secret not in reply.text, f"{secret!r} in {reply.text}"
    return error


def logged(caplog: pytest.LogCaptureFixture, request_id: str) -> str:
    """Every log line that names ``request_id``."""
    return "\n".join(r.getMessage() for r in caplog.records if request_id in r.getMessage())


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    yield from start_api("sqlite", tmp_path)


def test_every_answer_has_a_request_id_and_a_sane_one_is_kept(sqlite_api: Api) -> None:
    api = sqlite_api
    ok = api.call("GET", "/v1/instances", api.admin)
    assert ok.status_code == 200 and SANE.fullmatch(ok.headers["x-request-id"])
    mine = {**api.admin, "X-Request-Id": "proxy-7f3a.2:b_c"}
    missing = api.call("GET", "/v1/instances/nothing-here", mine)
    assert missing.status_code == 404
    assert discreet(missing)["requestId"] == "proxy-7f3a.2:b_c"
    assert "nothing-here" in missing.json()["error"]["message"]  # the caller's own words stay
    for insane in (b"", b"x" * 65, b"a b", b"-leading", b"\xe9t\xe9"):
        headers = {**api.admin, "X-Request-Id": insane}
        reply = api.call("GET", "/v1/instances/nothing-here", headers)
        made = discreet(reply)["requestId"]
        assert made.encode() != insane and re.fullmatch(r"[0-9a-f]{16}", made)
    ids = {api.call("GET", "/v1/hosts/none", api.admin).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_the_openapi_document_says_what_every_error_is(sqlite_api: Api) -> None:
    spec = sqlite_api.call("GET", "/v1/openapi.json", sqlite_api.admin).json()
    error_out = {"$ref": "#/components/schemas/ErrorOut"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            default = operation["responses"]["default"]
            assert default["content"]["application/json"]["schema"] == error_out, (method, path)
            assert "X-Request-Id" in default["headers"]
            assert "422" not in operation["responses"], (method, path)  # Tashi says 400
    assert "requestId" in spec["components"]["schemas"]["ErrorBody"]["properties"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "code"),
    [
        ("POST", "/v1/auth/token", {"username": "admin", "password": "x" * 12}, 401, None),
        ("GET", "/v1/nowhere", None, 404, "not_found"),
        ("POST", "/v1/instances", {"name": 5}, 400, "invalid_input"),
        ("POST", "/v1/instances", {"name": "a", "disks": [{"uri": "no.img"}]}, 404, "not_found"),
    ],
)
def test_errors_about_the_request_carry_the_id_too(
    sqlite_api: Api, method: str, url: str, body: object, status: int, code: str | None
) -> None:
    reply = sqlite_api.call(method, url, sqlite_api.admin, json=body)
    assert reply.status_code == status, reply.text
    error = discreet(reply)
    assert code is None or error["code"] == code


def test_a_refused_body_carries_the_id(tmp_path: Path) -> None:
    for api in start_api("memory", tmp_path, max_request_body=1024):
        reply = api.call("POST", "/v1/instances", api.admin, content=b"{" + b" " * 4096)
        assert reply.status_code == 413
        assert "1024" in discreet(reply)["message"]


def test_an_unexpected_error_is_an_internal_error_with_its_traceback_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    errors.install(app)
    app.add_middleware(RequestIds)

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug at /srv/tashi/secret.py:42")

    reply = TestClient(app, raise_server_exceptions=False).get("/bug")
    assert reply.status_code == 500
    error = discreet(reply, "secret")
    assert (error["code"], error["message"]) == ("internal_error", "internal error")
    [record] = [r for r in caplog.records if error["requestId"] in r.getMessage()]
    assert record.exc_info is not None and "secret.py" in str(record.exc_info[1])


def test_a_database_that_fails_is_told_as_such_and_logged_under_the_id(
    sqlite_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = sqlite_api
    admin = api.admin
    database = api.settings.cluster_manager.state_dir / "tashi.sqlite"
    for part in database.parent.glob(database.name + "*"):  # the file, its WAL and its index
        with part.open("r+b") as f:  # under the running app, as a failing disk would
            f.write(b"\xff" * part.stat().st_size)
    calls = [
        ("POST", "/v1/auth/token", {"username": "admin", "password": api.admin_password}),
        ("GET", "/v1/instances", None),
        ("GET", "/v1/hosts", None),
        ("POST", "/v1/instances", {"name": "web", "disks": [{"uri": "base.qcow2"}]}),
        ("DELETE", "/v1/instances/web", None),
    ]
    for method, url, body in calls:
        reply = api.call(method, url, admin, json=body)
        assert reply.status_code == 502, reply.text
        error = discreet(reply, database.name)
        assert (error["code"], error["message"]) == (
            "backend_failure",
            "database unavailable, retry",
        )
        detail = logged(caplog, error["requestId"])
        assert "file is not a database" in detail and url in detail, detail


@pytest.fixture
def nodes_api(tmp_path: Path) -> Iterator[Api]:
    yield from start_api("sqlite", tmp_path, nodes=HttpNodeGateway)


def test_a_node_manager_out_of_reach_is_told_as_such_and_logged_under_the_id(
    nodes_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = nodes_api
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = str(placeholder.getsockname()[1])
        node = api.user("node1", role="node")
        hid = register(api, node, endpoint=f"http://127.0.0.1:{port}").json()["hostId"]
        for name in ("web-1", "web-2"):
            iid = create(api, api.admin, name).json()["id"]
            force_state(api, iid, InstanceState.Activating, host=hid)
            force_state(api, iid, InstanceState.Running)
        reply = api.call("POST", "/v1/instances/web-1/pause", api.admin)
        batch = api.call("POST", "/v1/instances:shutdownMany", api.admin, json={"basename": "web"})
    assert reply.status_code == 503, reply.text
    error = discreet(reply, port)
    assert (error["code"], error["message"]) == (
        "unavailable",
        "the node manager is unavailable, retry",
    )
    assert f"127.0.0.1:{port}" in logged(caplog, error["requestId"])
    assert batch.status_code == 200, batch.text
    failed = batch.json()["failed"]
    assert [f["name"] for f in failed] == ["web-1", "web-2"]
    request_id = batch.headers["x-request-id"]
    for failure in failed:
        assert failure["error"] == {
            "code": "unavailable",
            "message": "the node manager is unavailable, retry",
            "requestId": request_id,
        }
    detail = logged(caplog, request_id)
    assert "instance web-1" in detail and "instance web-2" in detail and port in detail, detail
