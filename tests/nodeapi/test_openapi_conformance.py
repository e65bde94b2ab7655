"""Schemathesis against the node API, both sides, in process (``tests/fixtures/openapi.py``):
every answer of a node manager's app, and of the cluster manager's routes that node managers
call, is one the OpenAPI document declares (status, content type, body)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tashi.api import paths as public
from tashi.nodeapi import paths
from tashi.nodemanager.routes import create_app
from tashi.nodemanager.secgroups.fake import FakePlumbing
from tashi.nodemanager.secgroups.service import FirewallService
from tashi.nodemanager.witnessing import WitnessBook
from tests.api.conftest import Api, start_api
from tests.api.test_nodes import register
from tests.fixtures.openapi import conformance_failures
from tests.nodemanager.test_service import make, wire

NODE_SECRET = "n" * 40


@pytest.fixture
def node_app(tmp_path: Path) -> Iterator[TestClient]:
    """A node manager's app over the fake VMM, network and firewall plumbing, running one VM
    (5)."""
    node, _, _, _ = make(tmp_path, poweroff_delay=0.0, grace=3600.0)
    node.firewall = FirewallService(FakePlumbing(), tmp_path)
    node.arrival_wait = 0.2  # a migration's VM that never comes is given up quickly
    (tmp_path / "suspend").mkdir()
    app = create_app(node, NODE_SECRET, WitnessBook("p" * 40))
    with TestClient(app) as http:
        http.portal.call(node.firewall.start)  # type: ignore[union-attr]
        http.portal.call(node.start, wire(5))  # type: ignore[union-attr]
        yield http
        http.portal.call(node.close)  # type: ignore[union-attr]


def test_every_answer_of_a_node_manager_is_one_its_document_declares(
    node_app: TestClient,
) -> None:
    document = node_app.app.openapi()  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {NODE_SECRET}"}
    failures = conformance_failures(document, node_app, headers=auth, max_examples=5)
    assert failures == [], "\n\n".join(failures)


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    yield from start_api("sqlite", tmp_path)


def _node_routes(document: dict[str, Any]) -> dict[str, Any]:
    """The document with only the routes node managers call."""
    mine = (paths.NODE_REGISTER, paths.NODE_HEARTBEAT, paths.NODE_EVENTS)
    only = copy.deepcopy(document)
    only["paths"] = {p: ops for p, ops in document["paths"].items() if p in mine}
    return only


def test_every_answer_to_a_node_manager_is_one_the_document_declares(sqlite_api: Api) -> None:
    api = sqlite_api
    node = api.user("node1", role="node")
    assert register(api, node, "h1").status_code == 200  # host 1, whose reports then go in
    document = _node_routes(api.call("GET", public.OPENAPI, api.admin).json())
    assert len(document["paths"]) == 3
    failures = conformance_failures(document, api.http, headers=node, max_examples=5)
    assert failures == [], "\n\n".join(failures)
