"""Deadlines: nothing stays in a transitional state forever."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.domain.clock import FakeClock
from tashi.domain.states import DEADLINES, InstanceState
from tests.api.conftest import Api, start_api
from tests.api.test_instances import create, force_state

S = InstanceState


@pytest.fixture
def timed(tmp_path: Path) -> Iterator[tuple[Api, FakeClock]]:
    clock = FakeClock()
    yield from ((api, clock) for api in start_api("sqlite", tmp_path, clock=clock))


def put(api: Api, name: str, path: list[InstanceState], host: int | None = None) -> int:
    iid: int = create(api, api.admin, name).json()["id"]
    for i, state in enumerate(path):
        force_state(api, iid, state, host=host if i == 0 else None)
    return iid


@pytest.mark.parametrize(
    ("path", "after"),
    [
        ([S.Activating], "Held"),
        ([S.Activating, S.Running, S.Pausing], "Running"),
        ([S.Activating, S.Running, S.Pausing, S.Paused, S.Unpausing], "Paused"),
        ([S.Activating, S.Running, S.Suspending], "Running"),
        # h1 is not up: a migration given up goes Orphaned there (HA decides), not Running
        ([S.Activating, S.Running, S.MigratePrep, S.MigrateTrans], "Orphaned"),
    ],
)
def test_overdue_operations_give_up(
    timed: tuple[Api, FakeClock], path: list[InstanceState], after: str
) -> None:
    api, clock = timed
    api.call("POST", "/v1/hosts", api.admin, json={"name": "h1"})
    iid = put(api, "vm", path, host=1)
    check = api.service.deadlines.check
    assert api.http.portal.call(check) == []  # type: ignore[union-attr]
    clock.advance(DEADLINES[path[-1]] + 1)
    assert [i.id for i in api.http.portal.call(check)] == [iid]  # type: ignore[union-attr]
    got = api.call("GET", f"/v1/instances/{iid}", api.admin).json()
    assert got["state"] == after
    if after == "Held":
        assert got["hostId"] is None
        assert "did not finish in time" in got["reason"]


def test_a_destroy_whose_host_is_gone_is_finished(timed: tuple[Api, FakeClock]) -> None:
    api, clock = timed
    api.call("POST", "/v1/hosts", api.admin, json={"name": "h1"})  # registered, never up
    iid = put(api, "vm", [S.Activating, S.Running, S.Destroying], host=1)
    clock.advance(DEADLINES[S.Destroying] + 1)
    api.http.portal.call(api.service.deadlines.check)  # type: ignore[union-attr]
    assert api.call("GET", f"/v1/instances/{iid}", api.admin).status_code == 404
