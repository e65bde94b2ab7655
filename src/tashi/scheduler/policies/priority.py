"""SLA@SOI ``priority``: the queue in order of its owners' priority (``registerUser
--priority``; highest first, then first come), hosts by ``[Servers]`` rating for high-priority
users and, among equals, the least loaded by ``loadExpression``. It moves nothing.

``balanced`` and ``consolidated`` are this policy with migrations (and, for ``consolidated``, the
busiest host first and its own order), so they subclass it."""

from __future__ import annotations

from collections.abc import Sequence

from tashi.scheduler.loadexpr import LoadExpression
from tashi.scheduler.policies.base import Migration, PolicyOptions
from tashi.scheduler.policies.scored import ScoredPlanner
from tashi.scheduler.snapshot import Request, Snapshot


class Priority:
    name = "priority"
    busiest_first = False

    def __init__(self, options: PolicyOptions) -> None:
        self.options = options
        self.expression = LoadExpression(options.load_expression)

    def order(self, queue: Sequence[Request]) -> list[Request]:
        return sorted(queue, key=lambda r: (-r.priority, r.id))

    def plan(self, snapshot: Snapshot) -> ScoredPlanner:
        return ScoredPlanner(
            snapshot, self.options, self.expression, busiest_first=self.busiest_first
        )

    def migrations(self, snapshot: Snapshot) -> list[Migration]:
        return []
