"""What to do when a node manager's report and the store disagree: pure decisions.

A heartbeat carries every VM the node runs. ``plan`` compares it with the instances the store
places on that host and returns ``Decision``s; the node-report service applies each with a
compare-and-swap on the state it was planned from, so a decision made on a stale view simply
loses. The node manager is the authority on whether a VM process exists; the cluster manager is
the authority on what was asked of it.

Grace. A VM whose start (or end) is in flight may be missing from, or still present in, a
report sent a moment before; instances that entered their state less than ``grace`` seconds ago
are left alone.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tashi.domain.ids import InstanceId
from tashi.domain.models import Instance
from tashi.domain.states import Action, InstanceState

S = InstanceState


class Observed(enum.Enum):
    """A VM as a node manager sees it (the values of ``tashi.vmm.base.VmState``)."""

    starting = "starting"
    running = "running"
    paused = "paused"
    incoming = "incoming"
    migrating = "migrating"
    shutting_down = "shutting_down"
    exited = "exited"


@dataclass(frozen=True, slots=True)
class Seen:
    instance_id: InstanceId
    vm_id: int
    state: Observed


@dataclass(frozen=True, slots=True)
class Decision:
    instance_id: InstanceId
    expected: InstanceState  # the state the decision was planned from (compare-and-swap)
    action: Action
    vm_id: int | None = None
    note: str = ""


class Adopt:
    """A VM the node runs that the store does not place on this host."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen


#: (stored state, observed state) -> the action that brings the record in line.
_MATCH: dict[tuple[InstanceState, Observed], Action] = {
    (S.Activating, Observed.running): Action.started,
    (S.Resuming, Observed.running): Action.started,
    (S.Orphaned, Observed.running): Action.reattach,
    (S.Orphaned, Observed.paused): Action.reattach_paused,
    (S.Pausing, Observed.paused): Action.paused,
    (S.Unpausing, Observed.running): Action.unpaused,
}

#: What it means when the node no longer runs an instance stored in this state.
_GONE: dict[InstanceState, tuple[Action, str]] = {
    S.Activating: (Action.start_failed, "the VM did not start on its host"),
    S.Resuming: (Action.start_failed, "the VM could not be restored on its host"),
    S.Running: (Action.exited, "the VM stopped on its own (guest power-off or crash)"),
    S.Paused: (Action.exited, "the VM stopped while paused"),
    S.Pausing: (Action.exited, "the VM stopped while pausing"),
    S.Unpausing: (Action.exited, "the VM stopped while unpausing"),
    S.ShuttingDown: (Action.exited, "shut down"),
    S.Destroying: (Action.exited, "destroyed"),
    S.Stopping: (Action.exited, "stopped: powered off, its disks kept"),
    S.Orphaned: (Action.exited, "gone from its host"),
}


def waiting(
    inst: Instance, *, now: datetime, grace: float, awaited: Collection[InstanceId] = ()
) -> bool:
    """Whether ``plan`` leaves the instance alone for now: it entered its state less than
    ``grace`` seconds ago, or its start is awaited."""
    recent = inst.state_since is not None and inst.state_since > now - timedelta(seconds=grace)
    return recent or inst.id in awaited


def plan(
    stored: Sequence[Instance],
    reported: Iterable[Seen],
    *,
    now: datetime,
    grace: float,
    awaited: Collection[InstanceId] = (),
) -> tuple[list[Decision], list[Adopt]]:
    """Decisions for the instances ``stored`` on one host given what the host ``reported``.

    ``awaited``: instances whose start this cluster manager is still waiting for its node to
    answer; their answer settles them, not a report. On a host starting many VMs at once a
    start can outlast the grace, and the report sent meanwhile, without the VM, must not
    fail a start that is about to succeed (a 100-member group was torn down that way)."""
    seen = {s.instance_id: s for s in reported if s.state is not Observed.exited}
    decisions: list[Decision] = []
    for inst in stored:
        if waiting(inst, now=now, grace=grace, awaited=awaited):
            continue
        observed = seen.get(inst.id)
        if observed is None:
            gone = _GONE.get(inst.state)
            if gone is not None:
                decisions.append(Decision(inst.id, inst.state, gone[0], note=gone[1]))
            continue
        action = _MATCH.get((inst.state, observed.state))
        if action is not None:
            decisions.append(Decision(inst.id, inst.state, action, vm_id=observed.vm_id))
    known = {inst.id for inst in stored}
    adopt = [Adopt(s) for s in seen.values() if s.instance_id not in known]
    return decisions, adopt
