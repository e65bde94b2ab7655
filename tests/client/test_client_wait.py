"""``createVm/createMany --wait`` (``tashi.client.waiting``) against a scripted cluster manager:
one line per change, success when all run, the reason when one is Held, removed or late."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tashi.api.schemas import HostOut, InstanceOut
from tashi.client.waiting import wait_running
from tashi.domain.errors import InvalidState, NotFound, Unavailable
from tests.fixtures.instances import instance_out


def inst(iid: int, state: str, host: int | None = None, reason: str | None = None) -> InstanceOut:
    return instance_out(
        iid, state, host, name=f"web-{iid}", user="alice", groupName="web", reason=reason
    )


class Script:
    """``get_instance`` answers from one list of snapshots per id, one per poll."""

    def __init__(self, plan: dict[int, list[InstanceOut | None]]) -> None:
        self.plan: dict[int, Iterator[InstanceOut | None]] = {k: iter(v) for k, v in plan.items()}
        self.last: dict[int, InstanceOut | None] = {}

    def all_hosts(self) -> list[HostOut]:
        return [HostOut.model_construct(id=2, name="node2")]

    def get_instance(self, ref: Any) -> InstanceOut:
        now = next(self.plan[int(ref)], self.last.get(int(ref)))
        self.last[int(ref)] = now
        if now is None:
            raise NotFound(f"instance {ref} does not exist")
        return now


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def run(plan: dict[int, list[InstanceOut | None]], timeout: float = 60.0) -> tuple[Any, list[str]]:
    lines: list[str] = []
    clock = Clock()
    created = [inst(i, "Pending") for i in plan]
    waited = wait_running(
        Script(plan),  # type: ignore[arg-type]
        created,
        say=lines.append,
        timeout=timeout,
        clock=clock.now,
        sleep=clock.sleep,
    )
    return waited, lines


def test_all_running_ends_the_wait_with_one_line_per_change() -> None:
    waited, lines = run(
        {
            1: [inst(1, "Pending"), inst(1, "Pending"), inst(1, "Running", 2)],
            2: [inst(2, "Pending"), inst(2, "Activating", 2), inst(2, "Running", 2)],
        }
    )
    assert waited.errors == []
    assert [i.state for i in waited.instances] == ["Running", "Running"]
    assert lines == [
        "web-1: Pending",
        "web-2: Pending",
        "web-2: Pending -> Activating on node2",
        "web-1: Pending -> Running on node2",
        "web-2: Activating -> Running on node2",
    ]


def test_a_held_member_ends_the_wait_with_its_reason() -> None:
    why = "group web torn down: web-2 failed to start: qemu exited"
    waited, lines = run({1: [inst(1, "Pending"), inst(1, "Held", None, why)]})
    assert lines[-1] == f"web-1: Pending -> Held: {why}"
    (error,) = waited.errors
    assert isinstance(error, InvalidState) and why in error.message


def test_a_removed_or_late_instance_ends_the_wait() -> None:
    waited, _ = run({1: [inst(1, "Pending"), None]})
    assert isinstance(waited.errors[0], NotFound) and "removed" in waited.errors[0].message
    waited, _ = run({1: [inst(1, "Pending")]}, timeout=5.0)
    assert isinstance(waited.errors[0], Unavailable)
    assert "not Running after 5 s: web-1 (Pending)" in waited.errors[0].message
