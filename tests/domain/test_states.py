"""Walks the whole instance state table of ``tashi.domain.states``.

Every row must be what ``next_state`` answers, every pair that is not a row must be refused with a
message, and the graph the rows draw must have no unreachable state and no dead end.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

import pytest

from tashi.domain.errors import InvalidState, TashiError
from tashi.domain.states import (
    DEADLINES,
    INSTANCE_TRANSITIONS,
    ON_HOST,
    SETTABLE_HOST_STATES,
    TRANSITIONAL,
    Action,
    HostState,
    InstanceState,
    next_state,
    sources,
)

S = InstanceState
A = Action

ROWS = sorted(INSTANCE_TRANSITIONS.items(), key=lambda row: (row[0][0], row[0][1].value))
NON_ROWS = [
    (state, action)
    for state, action in itertools.product(InstanceState, Action)
    if (state, action) not in INSTANCE_TRANSITIONS
]


def _ids(pair: tuple[InstanceState, Action]) -> str:
    return f"{pair[0].name}-{pair[1].value}"


def _successors(state: InstanceState) -> set[InstanceState]:
    return {target for (source, _), target in INSTANCE_TRANSITIONS.items() if source is state}


def _reachable(
    start: InstanceState, *, skip: frozenset[Action] = frozenset()
) -> set[InstanceState]:
    seen = {start}
    todo = deque([start])
    while todo:
        state = todo.popleft()
        for (source, action), target in INSTANCE_TRANSITIONS.items():
            if source is state and action not in skip and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize(("pair", "target"), ROWS, ids=[_ids(p) for p, _ in ROWS])
def test_every_row_is_what_next_state_answers(
    pair: tuple[InstanceState, Action], target: InstanceState
) -> None:
    assert next_state(*pair) is target


@pytest.mark.parametrize("pair", NON_ROWS, ids=[_ids(p) for p in NON_ROWS])
def test_every_pair_outside_the_table_is_refused_with_a_message(
    pair: tuple[InstanceState, Action],
) -> None:
    state, action = pair
    with pytest.raises(InvalidState) as caught:
        next_state(state, action)
    message = caught.value.message
    assert action.value in message
    assert state.name in message
    for allowed in sources(action):
        assert allowed.name in message, "the message lists where the action is allowed"


def test_the_table_is_not_trivially_small() -> None:
    # A guard against a refactoring that empties the table and makes the walks above vacuous.
    assert len(ROWS) > 60
    assert len(ROWS) + len(NON_ROWS) == len(InstanceState) * len(Action)


def test_every_action_is_allowed_from_somewhere() -> None:
    for action in Action:
        assert sources(action), f"{action.value} is never allowed"


def test_sources_agrees_with_the_table() -> None:
    for action in Action:
        expected = {s for (s, a) in INSTANCE_TRANSITIONS if a is action}
        assert sources(action) == expected


def test_every_state_is_reachable_from_pending() -> None:
    assert _reachable(S.Pending) == set(InstanceState)


def test_every_state_is_reachable_without_an_operator_override() -> None:
    reached = _reachable(S.Pending, skip=frozenset({A.force_destroy}))
    assert reached == set(InstanceState)


def test_exited_is_terminal() -> None:
    assert _successors(S.Exited) == set()
    for action in Action:
        with pytest.raises(InvalidState):
            next_state(S.Exited, action)


def test_exited_is_reachable_from_every_state_without_force() -> None:
    # No dead ends: an instance can always leave through the normal actions.
    for state in InstanceState:
        assert S.Exited in _reachable(state, skip=frozenset({A.force_destroy})), state.name


@pytest.mark.parametrize("state", [s for s in InstanceState if s is not S.Exited], ids=str)
def test_force_destroy_from_every_state(state: InstanceState) -> None:
    assert next_state(state, A.force_destroy) is S.Exited


def test_transitional_states_all_have_a_positive_deadline() -> None:
    assert set(DEADLINES) == set(TRANSITIONAL)
    for state, seconds in DEADLINES.items():
        assert seconds > 0, state.name


def test_transitional_states_can_be_left_without_force() -> None:
    # The reconciler acts on a missed deadline; it needs a way out that is not an override.
    for state in TRANSITIONAL:
        ways_out = {a for (s, a) in INSTANCE_TRANSITIONS if s is state} - {A.force_destroy}
        assert ways_out, state.name


def test_steady_states_have_no_deadline() -> None:
    for state in (S.Pending, S.Held, S.Running, S.Paused, S.Suspended, S.Orphaned, S.Stopped):
        assert state not in TRANSITIONAL
        assert state not in DEADLINES


def test_destroy_removes_at_once_only_what_runs_nowhere() -> None:
    at_once = {s for s in sources(A.destroy) if next_state(s, A.destroy) is S.Exited}
    assert at_once == {S.Pending, S.Held, S.Suspended, S.Stopped}
    assert not at_once & ON_HOST


def test_destroy_of_something_that_may_run_goes_through_destroying() -> None:
    for state in ON_HOST - {S.Destroying}:
        assert next_state(state, A.destroy) is S.Destroying
    with pytest.raises(InvalidState):
        next_state(S.Destroying, A.destroy)


def test_a_lost_host_orphans_everything_that_may_run_on_it() -> None:
    assert sources(A.host_lost) == ON_HOST
    for state in ON_HOST:
        assert next_state(state, A.host_lost) is S.Orphaned


def test_a_suspend_keeps_the_record_when_the_process_exits() -> None:
    assert next_state(S.Suspending, A.exited) is S.Suspended
    assert next_state(S.Suspended, A.resume) is S.Pending


def test_the_source_of_a_migration_exiting_does_not_end_the_instance() -> None:
    # The original ignored the source node's Exited during MigrateTrans (reference §4.3).
    with pytest.raises(InvalidState):
        next_state(S.MigrateTrans, A.exited)


def test_instance_state_numbers_are_the_original_tashi_ones() -> None:
    original = [
        "Pending",
        "Activating",
        "Running",
        "Pausing",
        "Paused",
        "Unpausing",
        "Suspending",
        "Resuming",
        "MigratePrep",
        "MigrateTrans",
        "ShuttingDown",
        "Destroying",
        "Orphaned",
        "Held",
        "Exited",
        "Suspended",
    ]
    for number, name in enumerate(original, start=1):
        assert InstanceState[name] == number
    assert S.PreparingDisk == 17


def test_host_state_numbers_are_the_original_tashi_ones() -> None:
    assert [(s.name, s.value) for s in HostState] == [
        ("Normal", 1),
        ("Drained", 2),
        ("VersionMismatch", 3),
    ]
    assert HostState.VersionMismatch not in SETTABLE_HOST_STATES
    assert {HostState.Normal, HostState.Drained} == SETTABLE_HOST_STATES


@pytest.mark.parametrize("text", ["running", "RUNNING", " Running ", "rUnNiNg"])
def test_instance_state_parse_ignores_case_and_spaces(text: str) -> None:
    assert InstanceState.parse(text) is S.Running


@pytest.mark.parametrize("text", ["drained", "DRAINED", " Drained"])
def test_host_state_parse_ignores_case_and_spaces(text: str) -> None:
    assert HostState.parse(text) is HostState.Drained


@pytest.mark.parametrize(
    ("parse", "text"),
    [(InstanceState.parse, "Sleeping"), (InstanceState.parse, ""), (HostState.parse, "Up")],
)
def test_parse_of_an_unknown_state_names_the_known_ones(
    parse: Callable[[str], object], text: str
) -> None:
    with pytest.raises(InvalidState) as caught:
        parse(text)
    assert "known states" in caught.value.message
    assert isinstance(caught.value, TashiError)


def test_a_stop_keeps_the_instance_and_a_start_places_it_again() -> None:
    assert next_state(S.Running, A.stop) is S.Stopping
    assert next_state(S.Stopping, A.exited) is S.Stopped  # not removed: its disks wait
    assert next_state(S.Stopped, A.start) is S.Pending
    assert S.Stopping in ON_HOST and S.Stopped not in ON_HOST
    with pytest.raises(InvalidState):
        next_state(S.Suspended, A.stop)
