"""What this cluster manager remembers of each host's last full report (ADR 0023), so that a
heartbeat that says nothing new costs next to nothing.

Kubernetes split a node's liveness (a small lease renewed every few seconds) from its status
(written when it changes). Tashi does the same with one message: every heartbeat carries the
whole report, and ``NodeReports`` decides how far it goes.

- **The whole way** (``nodereports``): the host's row locked and its ownership checked, the
  node's fences handled, witnesses chosen, the host written, the report reconciled against the
  store. It takes this way when the host has no entry here (its first report since this
  process started), when the report differs from the last one settled (its VMs and their
  states, the host's memory, cores, underlay, witness epoch or security-group policy version,
  which ``FirewallSync`` hears of then), when it names VMs the node
  fenced, when a write touched the host or an instance on it since (``touch``: a user's
  request, the scheduler's placement, the host marked down, another host taken as its
  witness), when its witness set would change, and at least every ``FULL_EVERY`` seconds.
- **A renewal**: only the time, load and lease are written, with other hosts' renewals in one
  transaction (``renewals.Renewals``), and the reply is built from the entry here.

A report is *settled* when its reconciliation left nothing to do later: no VM in its grace
period or awaited, no stranger fenced or adopted, no race lost. Only then is the entry kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tashi.domain.clock import Clock
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.nodes import Heartbeat, ReportKey, WitnessSet, heartbeat_key
from tashi.domain.states import HostState
from tashi.domain.witnesses import following

#: Seconds after which a host's report goes the whole way even though nothing seemed to change
#: (a write this process was not told of: another tool on the database), plus a spread of up
#: to ``SPREAD`` s by host id so that the hosts do not all go at once.
FULL_EVERY = 300.0
SPREAD = 60


@dataclass(frozen=True, slots=True)
class Settled:
    """A host's last settled report and the reply it got."""

    user_id: UserId  # the node account the host is bound to
    state: HostState
    key: ReportKey
    witnesses: WitnessSet | None
    examined: tuple[HostId, ...]  # the ring's hosts looked at to choose the witnesses
    short: bool  # the ring ran out before enough witnesses were found
    instances: frozenset[InstanceId]  # stored on the host after the reconciliation
    mark: int  # the host's touch count when the report began
    until: float  # monotonic time by which the next report goes the whole way


class HostBook:
    """Used from the event loop only."""

    def __init__(self, clock: Clock, *, full_every: float = FULL_EVERY) -> None:
        self._full_every = full_every
        self._clock = clock
        self._settled: dict[HostId, Settled] = {}
        self._marks: dict[HostId, int] = {}  # how often each host was touched
        self._where: dict[InstanceId, HostId] = {}  # an instance -> the settled host it is on
        self._witnessed: dict[HostId, set[HostId]] = {}  # a host -> hosts it may witness

    def mark(self, host_id: HostId) -> int:
        """The host's touch count, to give to ``settle`` when its report is settled."""
        return self._marks.get(host_id, 0)

    def quick(self, host_id: HostId, user_id: UserId, key: ReportKey) -> Settled | None:
        """The host's entry if a heartbeat of ``key`` (``domain.nodes.report_key``) may be a
        renewal (the caller still checks the witnesses with ``examined``, and that it fenced
        nothing), else ``None``."""
        entry = self._settled.get(host_id)
        if (
            entry is None
            or entry.user_id != user_id
            or entry.mark != self.mark(host_id)
            or self._clock.monotonic() >= entry.until
            or entry.key != key
        ):
            return None
        return entry

    def settle(
        self,
        host_id: HostId,
        *,
        user_id: UserId,
        state: HostState,
        beat: Heartbeat,
        witnesses: tuple[WitnessSet, tuple[HostId, ...], bool] | None,
        instances: Iterable[InstanceId],
        mark: int,
    ) -> None:
        """Keep the host's settled report (``mark``: its touch count when the report began;
        a touch since then leaves the entry stale)."""
        self.forget(host_id)
        on_host = frozenset(instances)
        for iid in on_host:
            self._where[iid] = host_id
        examined: tuple[HostId, ...] = witnesses[1] if witnesses else ()
        for witness in examined:
            self._witnessed.setdefault(witness, set()).add(host_id)
        self._settled[host_id] = Settled(
            user_id=user_id,
            state=state,
            key=heartbeat_key(beat),
            witnesses=witnesses[0] if witnesses else None,
            examined=examined,
            short=witnesses[2] if witnesses else False,
            instances=on_host,
            mark=mark,
            until=self._clock.monotonic() + self._full_every + host_id % SPREAD,
        )

    def forget(self, host_id: HostId) -> None:
        """Drop the host's entry: its next report goes the whole way."""
        entry = self._settled.pop(host_id, None)
        if entry is None:
            return
        for iid in entry.instances:
            if self._where.get(iid) == host_id:
                del self._where[iid]
        for witness in entry.examined:
            witnessing = self._witnessed.get(witness)
            if witnessing is not None:
                witnessing.discard(host_id)
                if not witnessing:
                    del self._witnessed[witness]

    def touch(self, hosts: Iterable[int], instances: Iterable[int], reporting: int | None) -> None:
        """A committed write touched these hosts and instances (``ChangeFeed.on_touch``);
        ``reporting``: the host whose own report it recorded, which it leaves alone. A host
        touched, or on which an instance touched was, reports the whole way next time, and so
        do the hosts that may take a touched host as their witness."""
        for host_id in self._hosts_of(hosts, instances):
            if host_id == reporting:
                continue
            self._bump(host_id)
            for dependent in self._witnessed.get(host_id, ()):
                self._bump(dependent)

    def _hosts_of(self, hosts: Iterable[int], instances: Iterable[int]) -> set[HostId]:
        found = {HostId(h) for h in hosts}
        found.update(h for i in instances if (h := self._where.get(InstanceId(i))) is not None)
        return found

    def _bump(self, host_id: HostId) -> None:
        self._marks[host_id] = self._marks.get(host_id, 0) + 1

    def __len__(self) -> int:
        return len(self._settled)


def same_ring(
    ring: Sequence[HostId], host_id: HostId, examined: tuple[HostId, ...], short: bool = False
) -> bool:
    """Whether ``ring`` (the up hosts' ids, sorted) still puts ``examined`` first after
    ``host_id`` (and, when the ring ran ``short`` of witnesses then, nothing more): then the
    host's witnesses are chosen as before."""
    got = following(host_id, ring)
    if not all(next(got, None) == h for h in examined):
        return False
    return not short or next(got, None) is None
