"""The policy protocol: given a snapshot and an instance, ranked hosts or why none fits.

A policy orders the queue (``order``) and, per round, makes a ``Planner`` from the snapshot
(``plan``). The planner answers ``candidates`` for one request — up to ``MAX_CANDIDATES`` host ids,
best first, or a readable reason — and is told of each placement (``placed``) or a placement the
cluster manager refused (``released``), so that its free-capacity figures stay right within the
round at O(1)-ish cost. ``migrations`` lets a policy move running VMs (SLA@SOI consolidation and
rebalancing); most policies propose none.

Hints shared by every policy (the original primitive scheduler's): ``targetHost`` (a host id or
name) and ``allowElsewhere`` (``True``: another host will do if the target cannot take it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from tashi.scheduler.snapshot import Ledger, Limits, Request, Snapshot

MAX_CANDIDATES = 4
DEFAULT_LOAD_EXPRESSION = "memUsage + coresUsage * 512 + cpuUsage"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class PolicyOptions:
    """Everything a policy reads from the configuration (``[Scheduler]``, ``[Primitive]``,
    ``[Servers]``)."""

    dense_pack: bool = False
    limits: Limits = field(default_factory=Limits)
    load_expression: str = DEFAULT_LOAD_EXPRESSION
    servers: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    high_priority: int = 1
    optimal_consolidation: bool = False
    reschedule_after_start: bool = False
    auto_migrations: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """Host ids, best first; empty with a ``reason`` when nothing fits."""

    hosts: tuple[int, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Migration:
    instance_id: int
    instance_name: str
    target_host_id: int
    why: str


class Planner(Protocol):
    def candidates(self, request: Request, exclude: frozenset[int] = frozenset()) -> Decision:
        """Ranked hosts for ``request``, never one of ``exclude`` (host ids already refused)."""

    def placed(self, request: Request, host_id: int) -> None:
        """``request`` now takes capacity on ``host_id``."""

    def released(self, request: Request, host_id: int) -> None:
        """Undo ``placed`` (the cluster manager refused the claim)."""


class Policy(Protocol):
    name: str

    def order(self, queue: Sequence[Request]) -> list[Request]:
        """The order in which to place the queue."""

    def plan(self, snapshot: Snapshot) -> Planner: ...

    def migrations(self, snapshot: Snapshot) -> list[Migration]:
        """Running VMs to move now (empty for most policies)."""


def truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def no_room(request: Request, ledger: Ledger, usable: int) -> str:
    memory = ledger.memory_of(request)
    return (
        f"no host has {memory} MB and {request.cores} core(s) free"
        f" ({usable} usable host(s) looked at)"
    )


def persistent_conflict(snapshot: Snapshot, request: Request) -> str | None:
    """The original's guard: a persistent first disk used by another instance waits."""
    uri = request.persistent_disk
    if uri is not None and snapshot.persistent_uses.get(uri, 0) > 1:
        return f"its persistent disk {uri!r} is in use by another instance"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """What the ``targetHost`` hint settles: a chosen position, or a reason, or nothing."""

    position: int | None = None
    reason: str | None = None
    elsewhere: bool = True  # may the general path run after this?


def target(snapshot: Snapshot, ledger: Ledger, request: Request, exclude: frozenset[int]) -> Target:
    """The primitive scheduler's target path, shared by every policy.

    Unlike the original, a target host that is down or not Normal is not tried (the cluster
    manager would refuse it): the instance waits for it unless ``allowElsewhere`` is set."""
    wanted = request.hints.get("targetHost")
    if not wanted:
        return Target()
    elsewhere = truthy(request.hints.get("allowElsewhere"))
    pos = snapshot.find_host(wanted)
    if pos is None:
        return Target(reason=f"its targetHost {wanted!r} is not a host", elsewhere=elsewhere)
    host = snapshot.hosts[pos]
    if not host.allows(request.user_id):
        why = f"its targetHost {host.name!r} is reserved for other users"
    elif not host.usable:
        state = "down" if not host.up else host.state
        why = f"its targetHost {host.name!r} is {state}"
    elif host.id in exclude:
        why = f"its targetHost {host.name!r} refused it"
    elif not ledger.fits(pos, request):
        why = f"its targetHost {host.name!r} lacks the capacity"
    else:
        return Target(position=pos)
    return Target(reason=why, elsewhere=elsewhere)


class LedgerPlanner:
    """What every planner shares: the round's snapshot and free-capacity ledger, and
    ``candidates`` around the planner's own ``search`` (host positions, best first), after the
    persistent-disk guard and the ``targetHost`` hint, every policy alike."""

    def __init__(self, snapshot: Snapshot, options: PolicyOptions) -> None:
        self.snapshot = snapshot
        self.options = options
        self.ledger = Ledger(snapshot, options.limits)
        self.usable = sum(1 for host in snapshot.hosts if host.usable)

    def search(self, request: Request, exclude: frozenset[int]) -> list[int]:
        raise NotImplementedError

    def candidates(self, request: Request, exclude: frozenset[int] = frozenset()) -> Decision:
        snapshot, ledger = self.snapshot, self.ledger
        conflict = persistent_conflict(snapshot, request)
        if conflict is not None:
            return Decision((), conflict)
        aimed = target(snapshot, ledger, request, exclude)
        if aimed.position is not None:
            return Decision((snapshot.hosts[aimed.position].id,))
        if aimed.reason is not None and not aimed.elsewhere:
            return Decision((), aimed.reason)
        found = self.search(request, exclude)
        if found:
            return Decision(tuple(snapshot.hosts[p].id for p in found))
        return Decision((), aimed.reason or no_room(request, ledger, self.usable))
