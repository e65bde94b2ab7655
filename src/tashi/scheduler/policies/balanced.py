"""SLA@SOI ``balanced``: the queue by user priority, each VM to the least loaded host that fits
(``loadExpression``; ``[Servers]`` ratings first for high-priority users).

With ``rescheduleAfterStart`` it also rebalances running VMs: when the cluster is quiet, the
smallest VM of the most loaded host moves to the least loaded host if that narrows the gap
between them (one move per round).
"""

from __future__ import annotations

from tashi.scheduler.policies.base import Migration
from tashi.scheduler.policies.moves import as_request, by_host, quiet, sources
from tashi.scheduler.policies.priority import Priority
from tashi.scheduler.snapshot import Snapshot


class Balanced(Priority):
    name = "balanced"

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
