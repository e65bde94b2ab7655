"""CPU spent by processes that are not the benchmark's, and waiting until there is little of it.

The node benchmarks boot guests under TCG on a shared two-core machine, where a neighbour's busy
process slows a boot as much as Tashi could. The benchmark's own processes are this one, its
children, and every process whose command line names the run's temporary directory or whose
working directory is inside it: the cluster manager and node managers (started there), every
qemu (its sockets and disks are there; ``-daemonize`` moves its working directory to ``/``) and
every ``qemu-img``. Everything else is a neighbour.

``Neighbours.snapshot`` reads the CPU time of every neighbour; ``used(before, after)`` adds what
they spent in between (a process that started meanwhile counts in full, one that ended meanwhile
is missed, so the figure is a lower bound). ``wait_quiet`` lets a measurement start once the
neighbours use less than a threshold. ``nodes.py`` records the figure next to each measurement.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float  # time.monotonic() when taken
    cpu: dict[tuple[int, int], float]  # (pid, start time in ticks) -> CPU seconds so far


class Neighbours:
    """The processes of this machine that are not the benchmark's own (see the module doc)."""

    def __init__(self, workspace: Path) -> None:
        self._root = str(workspace)
        self._marker = self._root.encode()
        self._self = os.getpid()

    def snapshot(self) -> Snapshot:
        cpu: dict[tuple[int, int], float] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            fields = _stat_fields(pid)
            if fields is None or fields[0] in ("Z", "X") or pid == self._self:
                continue  # a zombie spends nothing more (and its cmdline and cwd are gone)
            if self._ours(pid, int(fields[1])):
                continue
            cpu[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / _TICKS
        return Snapshot(time.monotonic(), cpu)

    def _ours(self, pid: int, ppid: int) -> bool:
        if ppid == self._self:
            return True
        try:
            if self._marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:  # gone meanwhile: leave it out rather than count its whole life
            return True
        return cwd == self._root or cwd.startswith(self._root + "/")

    def wait_quiet(self, limit: float, threshold: float, window: float = 1.0) -> float:
        """Wait up to ``limit`` seconds for one ``window`` in which the neighbours used less
        than ``threshold`` cores; return the last measured load (the caller records it)."""
        deadline = time.monotonic() + limit
        while True:
            before = self.snapshot()
            time.sleep(window)  # the measurement window itself, not a guess at readiness
            after = self.snapshot()
            load = cores(before, after)
            if load < threshold or time.monotonic() + window > deadline:
                return load


def used(before: Snapshot, after: Snapshot) -> float:
    """CPU seconds the neighbours spent between two snapshots."""
    total = 0.0
    for key, seconds in after.cpu.items():
        total += max(0.0, seconds - before.cpu.get(key, 0.0))
    return total


def cores(before: Snapshot, after: Snapshot) -> float:
    """``used`` as a share of one core over the time between the snapshots."""
    wall = after.at - before.at
    return used(before, after) / wall if wall > 0 else 0.0


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()
