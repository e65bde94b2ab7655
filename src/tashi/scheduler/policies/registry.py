"""Policies by name. ``[Scheduler] scheduler`` takes our names or the SLA@SOI class paths."""

from __future__ import annotations

from collections.abc import Callable

from tashi.domain.errors import InvalidInput
from tashi.scheduler.policies.balanced import Balanced
from tashi.scheduler.policies.base import Policy, PolicyOptions
from tashi.scheduler.policies.consolidated import Consolidated
from tashi.scheduler.policies.primitive import Primitive
from tashi.scheduler.policies.priority import Priority

POLICIES: dict[str, Callable[[PolicyOptions], Policy]] = {
    "primitive": Primitive,
    "priority": Priority,
    "balanced": Balanced,
    "consolidated": Consolidated,
}

ALIASES = {
    "tashi.agents.primitive": "primitive",
    "tashi.scheduler.primitivescheduler": "primitive",
    "tashi.scheduler.priorityscheduler": "priority",
    "tashi.scheduler.balancedscheduler": "balanced",
    "tashi.scheduler.consolidatedscheduler": "consolidated",
}


def canonical(name: str) -> str:
    """Our name for ``name`` (an SLA@SOI class path becomes its policy's name)."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def create(name: str, options: PolicyOptions) -> Policy:
    factory = POLICIES.get(canonical(name))
    if factory is None:
        known = ", ".join(POLICIES)
        raise InvalidInput(f"[Scheduler] scheduler = {name!r} is not a policy; known: {known}")
    return factory(options)
