"""Witnessed host leases (ADR 0010): who may vouch that a host is alive, and who must agree
before its VMs run elsewhere.

A host keeps its VMs running while it holds a fresh grant from any one of its *voters*: the
cluster manager, or one of a few other hosts, its *witnesses*. The cluster manager restarts a
silent host's VMs only when every voter agrees that it has granted the host nothing for a whole
lease. The two rules meet at every voter, so a host that still runs its VMs can never see them
started elsewhere; and a host cut off from everyone holds no grant, stops its VMs, and is then
restarted elsewhere.

The cluster manager chooses each host's witnesses (``choose``: the next hosts on a ring of the
up hosts, by id) and hands them out with heartbeat replies. A host may be using any set it was
sent and has not yet acknowledged as replaced, so ``WitnessSets`` keeps every set from the
newest acknowledged one on, and ``voters`` is their union: all of them must agree.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from tashi.domain.ids import HostId


@dataclass(frozen=True, slots=True)
class WitnessSets:
    """The witness sets a host may be using: ``sets`` as (epoch, hosts), oldest first, from the
    newest set the host acknowledged (``acked``) on. The last one is the current set."""

    sets: tuple[tuple[int, tuple[HostId, ...]], ...] = ()
    acked: int = 0

    @property
    def epoch(self) -> int:
        """The current set's epoch (0: none was ever chosen)."""
        return self.sets[-1][0] if self.sets else 0

    @property
    def current(self) -> tuple[HostId, ...]:
        return self.sets[-1][1] if self.sets else ()

    def voters(self) -> frozenset[HostId]:
        """Every host whose grant the host may hold now: all must agree before a restart."""
        return frozenset(h for _, hosts in self.sets for h in hosts)

    def lease_free(self) -> bool:
        """Whether the host may be running without a lease: a set it may use is empty (a host
        alone in its cluster has no one to vouch for it, so it never stops its VMs for want of
        a grant, and they are never restarted elsewhere while it may be using that set)."""
        return not self.sets or any(not hosts for _, hosts in self.sets)

    def settled(self) -> bool:
        """Whether the host uses the current set and no other (it acknowledged it)."""
        return self.acked >= self.epoch

    def with_current(self, hosts: Sequence[HostId]) -> WitnessSets:
        """These sets with ``hosts`` as the current set (a new epoch if it differs)."""
        chosen = tuple(hosts)
        if self.sets and self.current == chosen:
            return self
        return WitnessSets(sets=(*self.sets, (self.epoch + 1, chosen)), acked=self.acked)

    def acknowledge(self, epoch: int | None) -> WitnessSets:
        """The host reports it uses the set of ``epoch`` (and dropped the grants of any host
        not in it): older sets no longer count."""
        if epoch is None or epoch <= self.acked or epoch > self.epoch:
            return self
        kept = tuple((e, hosts) for e, hosts in self.sets if e >= epoch)
        return WitnessSets(sets=kept, acked=epoch)

    def to_json(self) -> str:
        return json.dumps({"acked": self.acked, "sets": [[e, list(h)] for e, h in self.sets]})

    @classmethod
    def from_json(cls, text: str | None) -> WitnessSets:
        if not text:
            return cls()
        doc = json.loads(text)
        sets = tuple((int(e), tuple(HostId(int(h)) for h in hosts)) for e, hosts in doc["sets"])
        return cls(sets=sets, acked=int(doc["acked"]))


def choose(host_id: HostId, up_hosts: Iterable[HostId], count: int) -> tuple[HostId, ...]:
    """The witnesses of ``host_id``: the ``count`` up hosts that follow it on the ring of up
    hosts ordered by id (fewer when there are fewer other hosts). A ring spreads the load:
    every host witnesses ``count`` others, and a host's set changes only when a neighbour on
    the ring comes or goes."""
    return tuple(itertools.islice(following(host_id, sorted(set(up_hosts))), max(0, count)))


def following(host_id: HostId, ring: Sequence[HostId]) -> Iterator[HostId]:
    """The hosts of ``ring`` (sorted ids, without duplicates) that follow ``host_id`` on it, in
    ring order, each once and ``host_id`` never: found by bisection, not a sort."""
    start = bisect.bisect_right(ring, host_id)
    for i in range(start, start + len(ring)):
        candidate = ring[i % len(ring)]
        if candidate != host_id:
            yield candidate
