"""SLA@SOI ``balanced``: the queue by user priority, each VM to the least loaded host that fits
(``loadExpression``; ``[Servers]`` ratings first for high-priority users).

With ``rescheduleAfterStart`` it also rebalances running VMs: when the cluster is quiet, the
smallest VM of the most loaded host moves to the least loaded host if that narrows the gap
between them (one move per round).
"""

from __future__ import annotations

from collections.abc import Sequence

from tashi.scheduler.loadexpr import LoadExpression
from tashi.scheduler.policies.base import Migration, PolicyOptions
from tashi.scheduler.policies.moves import as_request, by_host, quiet, sources
from tashi.scheduler.policies.priority import by_priority
from tashi.scheduler.policies.scored import ScoredPlanner
from tashi.scheduler.snapshot import Request, Snapshot


class Balanced:
    name = "balanced"

    def __init__(self, options: PolicyOptions) -> None:
        self.options = options
        self.expression = LoadExpression(options.load_expression)

    def order(self, queue: Sequence[Request]) -> list[Request]:
        return by_priority(queue)

    def plan(self, snapshot: Snapshot) -> ScoredPlanner:
        return ScoredPlanner(snapshot, self.options, self.expression, busiest_first=False)

    def migrations(self, snapshot: Snapshot) -> list[Migration]:
        if not self.options.reschedule_after_start or not quiet(snapshot):
            return []
        planner = self.plan(snapshot)
        vms = by_host(snapshot)
        usable = [p for p, h in enumerate(snapshot.hosts) if h.usable]
        if len(usable) < 2:
            return []
        coolest = min(usable, key=planner.load)
        for hottest in sorted(sources(snapshot, vms), key=planner.load, reverse=True)[:1]:
            if hottest == coolest:
                return []
            vm = min(vms[hottest], key=lambda v: (v.memory, v.cores, v.id))
            request = as_request(vm)
            if not planner.ledger.fits(coolest, request):
                return []
            before = planner.load(hottest) - planner.load(coolest)
            planner.ledger.give_back(hottest, request)
            planner.ledger.take(coolest, request)
            after = abs(planner.load(hottest) - planner.load(coolest))
            if after < before:
                target = snapshot.hosts[coolest]
                return [Migration(vm.id, vm.name, target.id, f"rebalancing onto {target.name}")]
        return []
