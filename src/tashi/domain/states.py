"""The one table of lifecycle states and the actions that move between them.

Instance states keep the names and numbers of the original Tashi (``InstanceState`` in
``rpyctypes.py``), plus SLA@SOI's ``PreparingDisk`` and EC2's ``Stopping``/``Stopped`` (an
instance whose disks are all persistent powered off and kept, to start again on any host).
Every allowed move is one row of ``INSTANCE_TRANSITIONS``: (state, action) -> next state.
Service methods name the action they perform; ``next_state`` answers where it leads or raises
``InvalidState``. Saves are compare-and-swap on the state the table started from, so two racing
actions cannot both win.

``Exited`` is never stored: reaching it means the instance record is removed (as in the original).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from tashi.domain.errors import InvalidState


class InstanceState(enum.IntEnum):
    """Lifecycle state of a VM instance, numbered as in the original Tashi."""

    Pending = 1
    Activating = 2
    Running = 3
    Pausing = 4
    Paused = 5
    Unpausing = 6
    Suspending = 7
    Resuming = 8
    MigratePrep = 9
    MigrateTrans = 10
    ShuttingDown = 11
    Destroying = 12
    Orphaned = 13
    Held = 14
    Exited = 15
    Suspended = 16
    PreparingDisk = 17
    Stopping = 18  # EC2's StopInstances: the guest is powered off, its disks kept
    Stopped = 19  # no VM anywhere; its persistent disks wait for a start on any host

    @classmethod
    def parse(cls, text: str) -> InstanceState:
        """The state called ``text`` (any case), or ``InvalidState`` naming the known ones."""
        for state in cls:
            if state.name.lower() == text.strip().lower():
                return state
        names = ", ".join(s.name for s in cls)
        raise InvalidState(f"{text!r} is not an instance state; known states: {names}")


class HostState(enum.IntEnum):
    """Administrative state of a host, numbered as in the original Tashi."""

    Normal = 1
    Drained = 2
    VersionMismatch = 3

    @classmethod
    def parse(cls, text: str) -> HostState:
        for state in cls:
            if state.name.lower() == text.strip().lower():
                return state
        names = ", ".join(s.name for s in cls)
        raise InvalidState(f"{text!r} is not a host state; known states: {names}")


class Action(enum.Enum):
    """Everything that can happen to an instance."""

    activate = "activate"  # the scheduler placed it; the node manager starts it
    resume_on_host = "resume_on_host"  # placed again after resumeVm; restored from its file
    prepare_disk = "prepare_disk"  # placed; its own persistent copy of an image is being made
    disk_ready = "disk_ready"
    started = "started"  # the node manager reports it running
    start_failed = "start_failed"
    hold = "hold"  # the scheduler cannot place it now; it will retry
    shutdown = "shutdown"
    destroy = "destroy"
    exited = "exited"  # the node manager reports the VM process gone
    pause = "pause"
    paused = "paused"
    pause_failed = "pause_failed"
    unpause = "unpause"
    unpaused = "unpaused"
    unpause_failed = "unpause_failed"
    suspend = "suspend"
    suspended = "suspended"
    suspend_failed = "suspend_failed"
    resume = "resume"
    migrate = "migrate"
    migrate_transfer = "migrate_transfer"
    migrated = "migrated"
    migrate_failed = "migrate_failed"
    host_lost = "host_lost"  # its host stopped answering
    reattach = "reattach"  # its host answers again and still runs it
    reattach_paused = "reattach_paused"
    reschedule = "reschedule"  # HA: start it again elsewhere
    group_failed = "group_failed"  # another member of its group failed to start; VM stopped
    stop = "stop"  # EC2's StopInstances: power the guest off, keep the instance and its disks
    start = "start"  # EC2's StartInstances: a stopped instance waits to be placed again
    force_destroy = "force_destroy"  # operator override, allowed from every state


S = InstanceState
A = Action

#: Every state in which a VM process may exist on a host.
ON_HOST: frozenset[InstanceState] = frozenset(
    {
        S.Activating,
        S.Running,
        S.Pausing,
        S.Paused,
        S.Unpausing,
        S.Suspending,
        S.Resuming,
        S.MigratePrep,
        S.MigrateTrans,
        S.ShuttingDown,
        S.Destroying,
        S.PreparingDisk,
        S.Stopping,
    }
)

#: States that exist only while something is in flight; each has a deadline (see ``DEADLINES``).
TRANSITIONAL: frozenset[InstanceState] = frozenset(
    {
        S.PreparingDisk,
        S.Activating,
        S.Pausing,
        S.Unpausing,
        S.Suspending,
        S.Resuming,
        S.MigratePrep,
        S.MigrateTrans,
        S.ShuttingDown,
        S.Destroying,
        S.Stopping,
    }
)


def _rows() -> Iterable[tuple[InstanceState, Action, InstanceState]]:
    yield from (
        (S.Pending, A.activate, S.Activating),
        (S.Held, A.activate, S.Activating),
        (S.Pending, A.resume_on_host, S.Resuming),
        (S.Held, A.resume_on_host, S.Resuming),
        (S.Pending, A.prepare_disk, S.PreparingDisk),
        (S.Held, A.prepare_disk, S.PreparingDisk),
        (S.PreparingDisk, A.disk_ready, S.Activating),
        (S.PreparingDisk, A.start_failed, S.Held),
        (S.Activating, A.started, S.Running),
        (S.Resuming, A.started, S.Running),
        (S.Activating, A.start_failed, S.Held),
        (S.Resuming, A.start_failed, S.Held),
        (S.Pending, A.hold, S.Held),
        (S.Running, A.shutdown, S.ShuttingDown),
        (S.Running, A.pause, S.Pausing),
        (S.Pausing, A.paused, S.Paused),
        (S.Pausing, A.pause_failed, S.Running),
        (S.Paused, A.unpause, S.Unpausing),
        (S.Unpausing, A.unpaused, S.Running),
        (S.Unpausing, A.unpause_failed, S.Paused),
        (S.Running, A.suspend, S.Suspending),
        (S.Suspending, A.suspended, S.Suspended),
        (S.Suspending, A.suspend_failed, S.Running),
        (S.Suspended, A.resume, S.Pending),
        (S.Running, A.migrate, S.MigratePrep),
        (S.MigratePrep, A.migrate_transfer, S.MigrateTrans),
        (S.MigrateTrans, A.migrated, S.Running),
        (S.MigratePrep, A.migrate_failed, S.Running),
        (S.MigrateTrans, A.migrate_failed, S.Running),
        (S.Orphaned, A.reattach, S.Running),
        (S.Orphaned, A.reattach_paused, S.Paused),
        (S.Orphaned, A.reschedule, S.Pending),
        (S.Running, A.stop, S.Stopping),
        (S.Paused, A.stop, S.Stopping),
        (S.Stopped, A.start, S.Pending),
    )
    # A group is placed all or nothing: when one member fails to start, the others' VMs are
    # stopped and every member waits, Held with the reason (clustermanager/instances/groups.py).
    for state in (S.Pending, S.PreparingDisk, S.Activating, S.Resuming, S.Running):
        yield (state, A.group_failed, S.Held)
    # Destroying a VM that has not started anywhere (or that only exists as a suspend file)
    # removes it at once; anything that may have a process goes through Destroying.
    for state in (S.Pending, S.Held, S.Suspended, S.Stopped):
        yield (state, A.destroy, S.Exited)
    for state in ON_HOST - {S.Destroying}:
        yield (state, A.destroy, S.Destroying)
    yield (S.Orphaned, A.destroy, S.Destroying)
    # The VM process ended. Where that was the point, the record goes; a suspend or a stop
    # keeps it.
    for state in ON_HOST - {S.Suspending, S.MigrateTrans, S.Stopping}:
        yield (state, A.exited, S.Exited)
    yield (S.Suspending, A.exited, S.Suspended)
    yield (S.Stopping, A.exited, S.Stopped)
    yield (S.Orphaned, A.exited, S.Exited)
    # A host that stops answering orphans everything it may have been running.
    for state in ON_HOST:
        yield (state, A.host_lost, S.Orphaned)
    for state in S:
        if state is not S.Exited:
            yield (state, A.force_destroy, S.Exited)


INSTANCE_TRANSITIONS: Mapping[tuple[InstanceState, Action], InstanceState] = {
    (state, action): target for state, action, target in _rows()
}

#: Default seconds an instance may stay in a transitional state before reconciliation acts.
DEADLINES: Mapping[InstanceState, float] = {
    S.PreparingDisk: 1800.0,
    S.Activating: 120.0,
    S.Resuming: 600.0,
    S.Pausing: 30.0,
    S.Unpausing: 30.0,
    S.Suspending: 600.0,
    S.MigratePrep: 60.0,
    S.MigrateTrans: 600.0,
    S.ShuttingDown: 120.0,
    S.Destroying: 60.0,
    S.Stopping: 120.0,
}


def next_state(state: InstanceState, action: Action) -> InstanceState:
    """Where ``action`` takes an instance in ``state``; ``InvalidState`` if it may not happen."""
    try:
        return INSTANCE_TRANSITIONS[(state, action)]
    except KeyError:
        allowed = sorted(s.name for s, a in INSTANCE_TRANSITIONS if a is action)
        raise InvalidState(
            f"cannot {action.value} an instance that is {state.name}"
            f" (allowed from: {', '.join(allowed)})"
        ) from None


def sources(action: Action) -> frozenset[InstanceState]:
    """The states from which ``action`` is allowed."""
    return frozenset(s for s, a in INSTANCE_TRANSITIONS if a is action)


#: States in which an instance has no host (its record keeps none).
OFF_HOST: frozenset[InstanceState] = frozenset({S.Held, S.Suspended, S.Stopped})

#: Administrative host states an operator may set with ``setHostState``.
SETTABLE_HOST_STATES: frozenset[HostState] = frozenset({HostState.Normal, HostState.Drained})
