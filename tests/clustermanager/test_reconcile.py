"""reconcile.plan: every (stored, observed) pairing that means something, and the grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tashi.clustermanager.hosts.reconcile import Observed, Seen, plan
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import DiskConfig, Instance
from tashi.domain.states import Action, InstanceState

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
S = InstanceState


def inst(iid: int, state: InstanceState, age: float = 60.0) -> Instance:
    return Instance(
        id=InstanceId(iid),
        name=f"vm{iid}",
        user_id=UserId(1),
        state=state,
        cores=1,
        memory=64,
        disks=(DiskConfig("a.img"),),
        nics=(),
        host_id=HostId(1),
        state_since=NOW - timedelta(seconds=age),
    )


def seen(iid: int, state: Observed, vm_id: int = 100) -> Seen:
    return Seen(InstanceId(iid), vm_id, state)


@pytest.mark.parametrize(
    ("stored", "observed", "action"),
    [
        (S.Activating, Observed.running, Action.started),
        (S.Resuming, Observed.running, Action.started),
        (S.Orphaned, Observed.running, Action.reattach),
        (S.Orphaned, Observed.paused, Action.reattach_paused),
        (S.Pausing, Observed.paused, Action.paused),
        (S.Unpausing, Observed.running, Action.unpaused),
    ],
)
def test_a_report_completes_what_was_in_flight(
    stored: InstanceState, observed: Observed, action: Action
) -> None:
    decisions, strangers = plan([inst(1, stored)], [seen(1, observed, 4242)], now=NOW, grace=5)
    assert [(d.instance_id, d.expected, d.action, d.vm_id) for d in decisions] == [
        (1, stored, action, 4242)
    ]
    assert strangers == []


@pytest.mark.parametrize(
    ("stored", "action"),
    [
        (S.Activating, Action.start_failed),
        (S.Resuming, Action.start_failed),
        (S.Running, Action.exited),
        (S.Paused, Action.exited),
        (S.ShuttingDown, Action.exited),
        (S.Destroying, Action.exited),
        (S.Orphaned, Action.exited),
    ],
)
def test_a_vm_missing_from_the_report_is_resolved(stored: InstanceState, action: Action) -> None:
    decisions, _ = plan([inst(1, stored)], [], now=NOW, grace=5)
    assert [d.action for d in decisions] == [action]
    assert decisions[0].note


def test_an_exited_report_counts_as_missing() -> None:
    decisions, _ = plan([inst(1, S.Running)], [seen(1, Observed.exited)], now=NOW, grace=5)
    assert [d.action for d in decisions] == [Action.exited]


@pytest.mark.parametrize("state", [S.Suspending, S.MigratePrep, S.MigrateTrans])
def test_operations_with_their_own_ending_are_left_alone(state: InstanceState) -> None:
    assert plan([inst(1, state)], [], now=NOW, grace=5) == ([], [])


def test_agreement_changes_nothing() -> None:
    stored = [inst(1, S.Running), inst(2, S.Paused)]
    reported = [seen(1, Observed.running), seen(2, Observed.paused)]
    assert plan(stored, reported, now=NOW, grace=5) == ([], [])


def test_recent_changes_get_grace() -> None:
    assert plan([inst(1, S.Activating, age=2)], [], now=NOW, grace=5) == ([], [])
    decisions, _ = plan([inst(1, S.Activating, age=6)], [], now=NOW, grace=5)
    assert [d.action for d in decisions] == [Action.start_failed]


def test_vms_the_store_does_not_place_here_are_strangers() -> None:
    _, strangers = plan(
        [inst(1, S.Running)],
        [seen(1, Observed.running), seen(7, Observed.running)],
        now=NOW,
        grace=5,
    )
    assert [s.seen.instance_id for s in strangers] == [7]


def test_an_awaited_start_is_left_to_the_nodes_answer() -> None:
    stored = [inst(1, S.Activating, age=60), inst(2, S.Activating, age=60)]
    decisions, _ = plan(stored, [], now=NOW, grace=5, awaited={InstanceId(1)})
    assert [(d.instance_id, d.action) for d in decisions] == [(2, Action.start_failed)]
