"""``primitive``: the original Tashi scheduler's placement, exactly (reference §7.1).

* FIFO: instances in ascending id order, Pending and Held alike.
* Hosts in the cluster manager's order; the scan starts at the host chosen last
  (``lastScheduledHost``) and wraps around, skipping hosts that are down, not Normal, or reserved
  for other users.
* Spread by default: the host with strictly fewer VMs wins, the first one met among equals;
  ``densePack`` (the option, or the hint of that name) picks the one with strictly more VMs.
  Only hosts with room (memory and cores of their placed instances plus this one, within the
  over-commit rates; 1.0 = none, as in the original) are considered.
* Hints ``targetHost``/``allowElsewhere``; host reservations; a persistent first disk in use by
  another instance waits.

To stay fast with thousands of hosts, usable hosts are kept in buckets by VM count, each a
sorted list of positions: a decision looks at the lowest (spread) or highest (densePack) bucket
first and, within it, at positions from ``lastScheduledHost`` on — the same answer as the
original's full scan, usually after a handful of steps.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from tashi.scheduler.policies.base import (
    MAX_CANDIDATES,
    LedgerPlanner,
    Migration,
    PolicyOptions,
    truthy,
)
from tashi.scheduler.snapshot import Request, Snapshot


class PrimitivePlanner(LedgerPlanner):
    def __init__(self, snapshot: Snapshot, options: PolicyOptions) -> None:
        super().__init__(snapshot, options)
        self.last = 0  # lastScheduledHost
        self.buckets: dict[int, list[int]] = {}
        for pos, host in enumerate(snapshot.hosts):
            if host.usable:
                self.buckets.setdefault(self.ledger.count[pos], []).append(pos)

    def search(self, request: Request, exclude: frozenset[int]) -> list[int]:
        hint = request.hints.get("densePack")
        dense = truthy(hint) if hint else self.options.dense_pack
        found: list[int] = []
        hosts, ledger, user = self.snapshot.hosts, self.ledger, request.user_id
        for count in sorted(self.buckets, reverse=dense):
            bucket = self.buckets[count]
            start = bisect_left(bucket, self.last)
            for pos in bucket[start:] + bucket[:start] if start else bucket:
                host = hosts[pos]
                if ledger.fits(pos, request) and host.allows(user) and host.id not in exclude:
                    found.append(pos)
                    if len(found) == MAX_CANDIDATES:
                        return found
        return found

    def placed(self, request: Request, host_id: int) -> None:
        pos = self.snapshot.index[host_id]
        self._move(pos, +1)
        self.ledger.take(pos, request)
        self.last = pos

    def released(self, request: Request, host_id: int) -> None:
        pos = self.snapshot.index[host_id]
        self._move(pos, -1)
        self.ledger.give_back(pos, request)

    def _move(self, pos: int, by: int) -> None:
        if not self.snapshot.hosts[pos].usable:
            return
        count = self.ledger.count[pos]
        bucket = self.buckets[count]
        del bucket[bisect_left(bucket, pos)]
        if not bucket:
            del self.buckets[count]
        insort(self.buckets.setdefault(count + by, []), pos)


class Primitive:
    name = "primitive"

    def __init__(self, options: PolicyOptions) -> None:
        self.options = options

    def order(self, queue: Sequence[Request]) -> list[Request]:
        return sorted(queue, key=lambda r: r.id)

    def plan(self, snapshot: Snapshot) -> PrimitivePlanner:
        return PrimitivePlanner(snapshot, self.options)

    def migrations(self, snapshot: Snapshot) -> list[Migration]:
        return []
