"""CPU time of this process and of the servers it started, to say who was busy during a phase.

The machine has two cores and the load generator runs on it too, so every phase records the CPU
seconds the client (this process, all threads), the cluster manager and the database server
(PostgreSQL's postmaster and its backends) spent, and what everything else on the machine used
("other": the machine is shared, and a busy neighbour skews latencies). ``wait_for_quiet`` lets
a phase start when the neighbours are quiet. ``load.py`` and ``listing.py`` take a
``CpuMeter`` snapshot before and after; ``report.py`` prints the shares.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds (user + system) so far: this process, the CM, the DB server tree, and all
    processes on the machine together."""

    client: float
    server: float
    db: float
    machine: float


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds spent between two samples, and the wall time they span."""

    wall: float
    client: float
    server: float
    db: float
    machine: float

    @property
    def other(self) -> float:
        """CPU seconds of processes that are not part of the benchmark (other users' work)."""
        return max(0.0, self.machine - self.client - self.server - self.db)

    def share(self, seconds: float) -> float:
        """``seconds`` as a fraction of one core over the wall time (1.0 = one busy core)."""
        return seconds / self.wall if self.wall > 0 else 0.0


class CpuMeter:
    """Samples CPU time of this process, of ``server_pid`` and of the tree under ``db_pid``."""

    def __init__(self, server_pid: int, db_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self.db_pid = db_pid

    def sample(self) -> CpuSample:
        own = resource.getrusage(resource.RUSAGE_SELF)
        db = tree_cpu_seconds(self.db_pid) if self.db_pid is not None else 0.0
        return CpuSample(
            own.ru_utime + own.ru_stime, process_cpu_seconds(self.server_pid), db, machine_busy()
        )


def spent(before: CpuSample, after: CpuSample, wall: float) -> CpuUse:
    return CpuUse(
        wall=wall,
        client=after.client - before.client,
        server=after.server - before.server,
        db=after.db - before.db,
        machine=after.machine - before.machine,
    )


def machine_busy() -> float:
    """CPU seconds all processors spent busy since boot (``/proc/stat``, idle and iowait
    excluded; guest time is already counted in user time)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def wait_for_quiet(limit: float, threshold: float, window: float = 1.0) -> float:
    """Wait up to ``limit`` seconds until the machine's busy CPU over one ``window`` is below
    ``threshold`` cores (the benchmark's servers are idle between phases, so that is other
    people's work). Returns the last measured load in cores; the caller records it."""
    deadline = time.monotonic() + limit
    while True:
        before, start = machine_busy(), time.monotonic()
        time.sleep(window)  # the measurement window itself, not a guess at readiness
        load = (machine_busy() - before) / (time.monotonic() - start)
        if load < threshold or time.monotonic() + window > deadline:
            return load


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads); 0 if it is gone."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU of ``root`` and of every live descendant (PostgreSQL forks one backend per
    connection; the pooled connections live as long as the cluster manager)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    tree = _descendants(root, parents)
    return sum(process_cpu_seconds(pid) for pid in tree)


def _descendants(root: int, parents: dict[int, int]) -> Sequence[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [root], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (so index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def calibrate() -> float:
    """Milliseconds this machine takes for a fixed pure-Python loop (best of five): a yardstick
    for comparing runs, since a virtual machine's speed drifts with its host's load."""

    def loop() -> float:
        start, total = time.perf_counter(), 0
        for i in range(2_000_000):
            total += i
        return time.perf_counter() - start

    return min(loop() for _ in range(5)) * 1e3
