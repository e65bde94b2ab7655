"""The SLA@SOI policies' common planner: hosts ranked by a key, kept in heaps.

Each usable host's key is (server rank, load, position): the load is ``loadExpression`` over
the host's figures (smaller first for ``balanced``/``priority``, larger first for
``consolidated``), and the server rank comes from ``[Servers] hostId = priority`` (higher =
better server): requests of high-priority users (``priority >= highPriority``) try the best
servers first, the others the worst first, which keeps the good servers free for those who
need them. There are two heaps, one per kind of request.

A placement changes one host's key: its new entry is pushed with a new version and the old one
is skipped when it surfaces (lazy deletion), so a decision costs O(log hosts) plus the hosts it
has to pass over. A host that cannot take even the smallest request of the round leaves the
heaps for the rest of the round.
"""

from __future__ import annotations

import heapq

from tashi.scheduler.loadexpr import LoadExpression
from tashi.scheduler.policies.base import (
    MAX_CANDIDATES,
    LedgerPlanner,
    PolicyOptions,
)
from tashi.scheduler.snapshot import Ledger, Request, Snapshot

Entry = tuple[float, float, int, int]  # (server rank, load key, position, version)


def host_values(snapshot: Snapshot, ledger: Ledger, pos: int) -> dict[str, float]:
    host = snapshot.hosts[pos]
    limits = ledger.limits
    memory = int(host.memory * limits.memory_over_rate)
    cores = host.cores * limits.cores_over_rate
    return {
        "memUsage": memory - ledger.free_memory[pos],
        "coresUsage": cores - ledger.free_cores[pos],
        "cpuUsage": host.load or 0.0,
        "memory": host.memory,
        "cores": host.cores,
        "freeMemory": ledger.free_memory[pos],
        "freeCores": ledger.free_cores[pos],
        "cpuSpeed": host.cpu_speed,
        "instances": ledger.count[pos],
    }


class ScoredPlanner(LedgerPlanner):
    def __init__(
        self,
        snapshot: Snapshot,
        options: PolicyOptions,
        expression: LoadExpression,
        *,
        busiest_first: bool,
    ) -> None:
        super().__init__(snapshot, options)
        self.expression = expression  # compiled once by the policy, not per round
        self.sign = -1.0 if busiest_first else 1.0
        self.version = [0] * len(snapshot.hosts)
        self.gone = [not h.usable for h in snapshot.hosts]
        self.heaps: tuple[list[Entry], list[Entry]] = ([], [])  # (high priority, others)
        self.smallest = min(snapshot.pending, key=lambda r: (r.cores, r.memory), default=None)
        for pos, host in enumerate(snapshot.hosts):
            if host.usable:
                self._push(pos)

    def load(self, pos: int) -> float:
        return self.expression(host_values(self.snapshot, self.ledger, pos))

    def _push(self, pos: int) -> None:
        rating = float(self.options.servers.get(self.snapshot.hosts[pos].id, 0))
        key = self.sign * self.load(pos)
        version = self.version[pos]
        heapq.heappush(self.heaps[0], (-rating, key, pos, version))
        heapq.heappush(self.heaps[1], (rating, key, pos, version))

    def _changed(self, pos: int) -> None:
        self.version[pos] += 1
        if self.gone[pos]:
            return
        if self.smallest is not None and not self.ledger.fits(pos, self.smallest):
            self.gone[pos] = True  # full for this round
            return
        self._push(pos)

    def search(self, request: Request, exclude: frozenset[int]) -> list[int]:
        heap = self.heaps[0 if request.priority >= self.options.high_priority else 1]
        hosts, ledger = self.snapshot.hosts, self.ledger
        found: list[int] = []
        passed: list[Entry] = []
        while heap and len(found) < MAX_CANDIDATES:
            entry = heapq.heappop(heap)
            pos = entry[2]
            if entry[3] != self.version[pos] or self.gone[pos]:
                continue  # stale
            passed.append(entry)
            host = hosts[pos]
            if (
                ledger.fits(pos, request)
                and host.allows(request.user_id)
                and host.id not in exclude
            ):
                found.append(pos)
        for entry in passed:
            heapq.heappush(heap, entry)
        return found

    def placed(self, request: Request, host_id: int) -> None:
        pos = self.snapshot.index[host_id]
        self.ledger.take(pos, request)
        self._changed(pos)

    def released(self, request: Request, host_id: int) -> None:
        pos = self.snapshot.index[host_id]
        self.ledger.give_back(pos, request)
        self.gone[pos] = not self.snapshot.hosts[pos].usable
        self._changed(pos)
