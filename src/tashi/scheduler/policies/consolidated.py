"""SLA@SOI ``consolidated``: the queue by user priority, each VM to the *busiest* host that still
fits it (``loadExpression``; ``[Servers]`` ratings first for high-priority users), so that the
other hosts stay empty and can be powered off.

``optimalConsolidation`` places larger VMs first within a priority (first-fit decreasing packs
tighter than first come, first served). ``autoMigrations`` empties hosts: when the cluster is
quiet, the least loaded host whose VMs all fit on busier hosts has them live-migrated there.
"""

from __future__ import annotations

from collections.abc import Sequence

from tashi.scheduler.policies.base import Migration
from tashi.scheduler.policies.moves import as_request, by_host, quiet, sources
from tashi.scheduler.policies.priority import Priority
from tashi.scheduler.policies.scored import ScoredPlanner
from tashi.scheduler.snapshot import Request, Running, Snapshot


class Consolidated(Priority):
    name = "consolidated"
    busiest_first = True

    def order(self, queue: Sequence[Request]) -> list[Request]:
        if self.options.optimal_consolidation:
            return sorted(queue, key=lambda r: (-r.priority, -r.memory, -r.cores, r.id))
        return super().order(queue)

    def migrations(self, snapshot: Snapshot) -> list[Migration]:
        if not self.options.auto_migrations or not quiet(snapshot):
            return []
        planner = self.plan(snapshot)
        vms = by_host(snapshot)
        for source in sorted(sources(snapshot, vms), key=planner.load):
            moves = self._empty(snapshot, planner, source, vms)
            if moves:
                return moves
        return []

    def _empty(
        self, snapshot: Snapshot, planner: ScoredPlanner, source: int, vms: dict[int, list[Running]]
    ) -> list[Migration]:
        """Moves that empty ``source`` onto hosts busier than it, or none if they do not fit."""
        load = planner.load(source)
        targets = sorted(
            (
                p
                for p in vms
                if p != source and snapshot.hosts[p].usable and planner.load(p) >= load
            ),
            key=planner.load,
            reverse=True,
        )
        moves: list[Migration] = []
        taken: list[tuple[int, Request]] = []
        for vm in sorted(vms[source], key=lambda v: (-v.memory, -v.cores, v.id)):
            request = as_request(vm)
            pos = next((p for p in targets if planner.ledger.fits(p, request)), None)
            if pos is None:
                for p, r in taken:
                    planner.ledger.give_back(p, r)
                return []
            planner.ledger.take(pos, request)
            taken.append((pos, request))
            host = snapshot.hosts[pos]
            moves.append(
                Migration(
                    vm.id,
                    vm.name,
                    host.id,
                    f"consolidating: emptying {snapshot.hosts[source].name}",
                )
            )
        return moves
