"""The node API refuses oversized bodies before they reach a route (``[NodeManagerService]
maxRequestBody``), in the API's error format. The node service is never reached, so a stand-in
object serves as one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from starlette.testclient import TestClient

from tashi.nodeapi import paths
from tashi.nodemanager.routes import create_app
from tashi.nodemanager.service import NodeService
from tashi.web.limits import HttpLimits

SECRET = "node-secret"
AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
UNUSED = cast(NodeService, object())


def test_the_default_cap_is_one_mebibyte() -> None:
    http = TestClient(create_app(UNUSED, SECRET))
    reply = http.post(paths.VMS, content=b"x" * (2 << 20), headers=AUTH)
    assert reply.status_code == 413
    error = reply.json()["error"]
    assert error["code"] == "too_large"
    assert "1048576" in error["message"] and "[NodeManagerService]" in error["message"]


def test_a_configured_cap_and_a_chunked_body() -> None:
    limits = HttpLimits(
        max_body=2048, head_timeout=10, body_timeout=30, max_connections=10, section="[X]"
    )
    http = TestClient(create_app(UNUSED, SECRET, limits=limits))

    def chunks() -> Iterator[bytes]:
        yield b"{" + b" " * 3000

    reply = http.post(paths.VMS, content=chunks(), headers=AUTH)
    assert "content-length" not in reply.request.headers
    assert reply.status_code == 413
    # Not even the secret is asked for a refused body: the refusal comes first.
    assert http.post(paths.VMS, content=b" " * 3000).status_code == 413
    assert http.post(paths.VMS, content=b"{}").status_code == 401
