"""What must hold on a virtual cluster after each round of the fault-injection suite, judged
from outside: the cluster manager's answers beside every QEMU process ``qemuwatch`` saw.

Pure functions of data (no I/O): each returns the violations it finds as sentences a person can
act on, naming the instance, the host, the pids and the times. ``leaks.py`` judges the
leftovers (taps, files, DHCP/DNS entries, processes); ``faultrun.py`` gathers the data and
calls both.

* ``one_place``: every instance in exactly one place and state. Running or Paused: exactly one
  live qemu, on the host the cluster manager names; Pending, Suspended or Held: none; no live
  qemu that no instance owns; nothing left in a state that is not stable.
* ``ran_twice``: no VM ran on two hosts at once (``QemuWatch.overlaps``), even for a moment.
* ``StopJudge.unasked``: every qemu that ended was asked to end (its instance destroyed,
  suspended or migrated by the workload in that round: a migration ends the source's process,
  and a failed one, like a failed restore, the target's; each such request explains one end),
  or ran on a host whose node manager was down long enough for its lease to run out
  (``Crash``: its watchdog fences its VMs, and that is the point). The short-lived launcher
  ``-daemonize`` leaves is no VM ending.

Times are ``CLOCK_BOOTTIME`` seconds, as in ``qemuwatch.Life``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tashi.api.schemas import InstanceOut
from tashi.devcluster.churn import Ask
from tashi.devcluster.qemuwatch import Life

STABLE = frozenset({"Running", "Paused", "Suspended", "Stopped"})
ON_HOST = frozenset({"Running", "Paused"})
OFF_HOST = frozenset({"Pending", "Suspended", "Held", "Stopped"})
SLACK = 1.0  # seconds: a request's time is taken before it is sent; /proc start times in ticks
FENCE_SLACK = 10.0  # seconds after its node manager is back that a crashed host may still fence
LAUNCHER_SLACK = 0.05  # the daemonized child starts within its launcher's life (clock ticks)
# A teardown's destroy that reached a node manager while the member's start was in flight waits
# for the start, then kills what it started: a VM started up to START_LAG after the teardown
# and ended within STOP_LAG of its start is that one.
START_LAG = 30.0
STOP_LAG = 2.0
# A teardown's history line is written once the member's node answered its destroy: on a busy
# machine that comes seconds after the qemu ended, not within ``SLACK``.
TEARDOWN_LAG = 10.0


@dataclass(frozen=True)
class Crash:
    """Host ``host``'s node manager was down from ``since`` until ``until`` (its first
    heartbeat again; ``inf``: never back), long enough for its lease to run out."""

    host: str
    since: float
    until: float


def key(life: Life) -> tuple[int, float]:
    return life.pid, life.started


def live(lives: Iterable[Life]) -> dict[int, list[Life]]:
    """Live QEMU processes by instance id."""
    found: dict[int, list[Life]] = {}
    for life in lives:
        if life.ended is None:
            found.setdefault(life.instance, []).append(life)
    return found


def _where(procs: Sequence[Life]) -> str:
    return ", ".join(f"{p.host} pid {p.pid}" for p in procs) or "none"


def one_place(
    instances: Sequence[InstanceOut],
    host_names: Mapping[int, str],
    lives: Iterable[Life],
    *,
    settled: bool = True,
) -> list[str]:
    """Every instance in exactly one place and (``settled``) a stable state (see the module
    doc); ``settled=False`` lets instances in flight be."""
    found = []
    running = live(lives)
    for inst in instances:
        procs = running.pop(inst.id, [])
        what = f"instance {inst.name} ({inst.id}) is {inst.state}"
        if inst.state in ON_HOST:
            host = host_names.get(inst.hostId) if inst.hostId is not None else None
            if [p.host for p in procs] != [host]:
                found.append(f"{what} on {host}, but its qemu processes are: {_where(procs)}")
        elif inst.state in OFF_HOST and procs:
            found.append(f"{what}, yet qemu runs: {_where(procs)}")
        if settled and inst.state not in STABLE:
            reason = f" ({inst.reason})" if inst.reason else ""
            found.append(f"{what}{reason}: not a stable state after the round")
    for iid, procs in sorted(running.items()):
        found.append(f"a qemu of instance {iid}, which no instance owns, runs: {_where(procs)}")
    return found


def ran_twice(pairs: Iterable[tuple[Life, Life]], reported: set[tuple[int, int]]) -> list[str]:
    """The pairs of ``QemuWatch.overlaps()`` not reported yet (``reported`` is updated)."""
    found = []
    for first, second in pairs:
        if (first.pid, second.pid) in reported:
            continue
        reported.add((first.pid, second.pid))
        end = "still running" if first.ended is None else f"ended at {first.ended:.2f}"
        found.append(
            f"instance {first.instance} ran twice: {first.host} pid {first.pid} (started"
            f" {first.started:.2f}, {end}) and {second.host} pid {second.pid} (started"
            f" {second.started:.2f})"
        )
    return found


def launchers(lives: Sequence[Life]) -> set[tuple[int, float]]:
    """The lives that were ``-daemonize`` launchers: ended, and another process of the same
    instance on the same host started while it lived (its daemonized child, forked early: the
    two start times may be one clock tick apart either way) and outlived it."""
    found = set()
    for life in lives:
        if life.ended is None:
            continue
        for other in lives:
            if (
                other is not life
                and other.instance == life.instance
                and other.host == life.host
                and life.started - LAUNCHER_SLACK <= other.started <= life.ended + LAUNCHER_SLACK
                and (other.ended is None or other.ended > life.ended)
            ):
                found.add(key(life))
                break
    return found


def explaining(life: Life, asks: Sequence[Ask], used: set[int], fresh: float) -> int | None:
    """The index of the workload's request that explains the end of ``life``, if any: a
    destroy sent before it ended (any number of ends: the instance is gone), or a group's
    teardown (``teardowns``) after it started, or before a start then in flight whose VM it
    ended at once (``START_LAG``, ``STOP_LAG``); or, among the
    requests sent since ``fresh`` (the round's start) and not ``used`` to explain another end,
    a suspend or migration sent while it lived (the source's end), or a migration or resume
    whose target process it was (a transfer that failed there)."""
    assert life.ended is not None
    for index, ask in enumerate(asks):
        if index in used or ask.instance != life.instance or ask.refused:
            continue
        if ask.at > life.ended + (TEARDOWN_LAG if ask.kind == "teardown" else SLACK):
            continue
        if ask.kind == "destroy":
            return index
        if ask.kind == "teardown" and ask.at >= life.started - SLACK:
            return index  # Tashi's own group rule stopped it (any number of ends, as a destroy)
        if (
            ask.kind == "teardown"
            and life.started - ask.at <= START_LAG
            and life.ended - life.started <= STOP_LAG
        ):
            return index  # its start was in flight at the teardown, whose destroy waited for it
        if ask.at < fresh:
            continue
        if ask.kind in ("suspend", "migrate") and ask.at >= life.started - SLACK:
            return index
        if ask.kind in ("migrate", "resume") and life.incoming and life.started >= ask.at - SLACK:
            return index
    return None


def fenced(life: Life, crashes: Iterable[Crash]) -> Crash | None:
    """The crash of this life's host that explains its end, if any."""
    assert life.ended is not None
    for crash in crashes:
        if (
            crash.host == life.host
            and life.started <= crash.until
            and crash.since - SLACK <= life.ended <= crash.until + FENCE_SLACK
        ):
            return crash
    return None


class StopJudge:
    """Judges each qemu that ended once (invariant 3); a suspend, migration or resume explains
    at most one end, and only in its own round."""

    def __init__(self) -> None:
        self._judged: set[tuple[int, float]] = set()
        self._used: set[int] = set()  # asks that explained an end already

    def unasked(
        self, lives: Sequence[Life], asks: Sequence[Ask], crashes: Sequence[Crash], fresh: float
    ) -> list[str]:
        """Every qemu that ended, not judged before, that nobody asked to end (``asks`` since
        ``fresh`` for all but destroys) and no crash explains, in the order they ended."""
        found = []
        starters = launchers(lives)
        ended = sorted(
            (life for life in lives if life.ended is not None and key(life) not in self._judged),
            key=lambda life: life.ended or 0.0,
        )
        for life in ended:
            self._judged.add(key(life))
            if key(life) in starters or fenced(life, crashes):
                continue
            index = explaining(life, asks, self._used, fresh)
            if index is not None:
                if asks[index].kind not in ("destroy", "teardown"):
                    self._used.add(index)
                continue
            found.append(
                f"the qemu of instance {life.instance} on {life.host} (pid {life.pid}, started"
                f" {life.started:.2f}) ended at {life.ended:.2f}: nobody asked, and its host"
                " did not crash"
            )
        return found


def teardowns(instance: int, history: Sequence[tuple[str, float]]) -> list[Ask]:
    """The group teardowns in an instance's history (kind, boottime): all-or-nothing placement
    (ADR 0009) stops the VMs of a group's members when one of them fails to start, a stop that
    Tashi asked for, not the workload. ``teardown`` asks explain such ends."""
    return [Ask(instance, "teardown", at) for kind, at in history if kind == "groupFailed"]
