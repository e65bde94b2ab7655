"""Schemathesis against the cluster manager's API, in process (``tests/fixtures/openapi.py``):
every answer, to an admin and to a user, is one the OpenAPI document declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis

from tashi.api import paths
from tests.api.conftest import Api, start_api
from tests.fixtures.openapi import conformance_failures

#: logging out would end the run's session; tests/api/test_auth.py covers it
SKIP = {f"DELETE {paths.TOKEN}"}


def short_poll(case: schemathesis.Case) -> None:
    """The change feed answers at once instead of holding a request for up to a minute."""
    if case.path == paths.INSTANCE_CHANGES and isinstance(case.query, dict):
        case.query["timeout"] = 0


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    yield from start_api("sqlite", tmp_path)


@pytest.mark.parametrize("role", ["admin", "user"])
def test_every_answer_is_one_the_document_declares(sqlite_api: Api, role: str) -> None:
    api = sqlite_api
    vm = {"name": "vm", "disks": [{"uri": "base.qcow2"}]}
    api.call("POST", paths.INSTANCES, api.admin, json=vm)
    who = api.admin if role == "admin" else api.user("alice")
    document = api.call("GET", paths.OPENAPI, who).json()
    failures = conformance_failures(
        document, api.http, headers=who, max_examples=5, skip=SKIP, adjust=short_poll
    )
    assert failures == [], "\n\n".join(failures)


def test_every_route_documents_its_answer_and_who_may_call_it(sqlite_api: Api) -> None:
    spec = sqlite_api.call("GET", paths.OPENAPI, sqlite_api.admin).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    open_routes = {f"GET {paths.HEALTH}", f"GET {paths.METRICS}", f"POST {paths.TOKEN}"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            for media, content in success["content"].items():
                assert content["schema"] != {"type": "string"} or media == "text/plain", label
            assert ("security" in operation) == (label not in open_routes), label
            assert "500" in operation["responses"], label


BEYOND = 2**63  # one past what the store's integer columns keep


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("GET", f"{paths.INSTANCES}?after={BEYOND}", None, "after"),
        ("GET", f"{paths.INSTANCES}?limit={BEYOND}", None, "limit"),
        ("GET", f"{paths.HOSTS}?after={BEYOND}", None, "after"),
        ("GET", f"{paths.HOSTS}?limit={BEYOND}", None, "limit"),
        ("GET", f"{paths.USERS}?after={BEYOND}", None, "after"),
        ("GET", f"{paths.NETWORKS}?limit={BEYOND}", None, "limit"),
        ("GET", f"{paths.IMAGES}?after={BEYOND}", None, "after"),
        ("GET", f"{paths.ADDRESSES}?after={BEYOND}", None, "after"),
        ("GET", f"{paths.ADDRESSES}?network={BEYOND}", None, "network"),
        ("POST", paths.DESTROY_MANY, {"ids": [BEYOND]}, "ids.0"),
        ("POST", paths.HOSTS, {"name": "h", "memory": BEYOND}, "memory"),
        ("POST", paths.HOSTS, {"name": "h", "cores": -BEYOND - 1}, "cores"),
        (
            "POST",
            paths.INSTANCES,
            {"name": "v", "disks": [{"uri": "base.qcow2"}], "userId": BEYOND},
            "userId",
        ),
        (
            "POST",
            paths.INSTANCES,
            {"name": "v", "disks": [{"uri": "base.qcow2"}], "nics": [{"network": BEYOND}]},
            "nics.0.network",
        ),
    ],
)
def test_an_integer_the_store_cannot_keep_is_refused_at_the_edge(
    sqlite_api: Api, method: str, url: str, body: object, field: str
) -> None:
    """The document states the bound; without it these reached SQLite and were answered 500."""
    reply = sqlite_api.call(method, url, sqlite_api.admin, json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["message"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    "url",
    [
        f"{paths.INSTANCES}/{BEYOND}",
        f"{paths.HOSTS}/{BEYOND}",
        f"{paths.USERS}/{BEYOND}",
        f"{paths.INSTANCES}/²",  # a digit to str.isdigit, not to int()
        f"{paths.HOSTS}/²",
    ],
)
def test_a_reference_no_record_can_have_is_not_found(sqlite_api: Api, url: str) -> None:
    """An id beyond the store's integers, or digits int() cannot read, name nothing: 404, not
    a 500 from SQLite or from int()."""
    reply = sqlite_api.call("GET", url, sqlite_api.admin)
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"]["code"] == "not_found"
