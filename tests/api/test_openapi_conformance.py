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
