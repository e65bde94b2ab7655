"""The node suite's results: one row per figure with its same-run baseline, the issue's goals,
the table printed and the JSON written under ``bench/results/``.

``ratio`` is Tashi's figure divided by the baseline's, as in the control suite (``report.py``):
for a time, 1.03x means Tashi takes 3 % longer. Medians and 90th percentiles are nearest-rank
over the repetitions. The goals of issue 3 judged here: boot median ratio <= 1.05 and node-manager
memory <= 2 MB per VM. The note flags a figure measured while other processes used >= 0.25
cores (``neighbours.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.boot import BootResults, BootSample
from bench.migrate import MigrationResults, MigrationSample
from bench.nmmemory import MemoryResults
from bench.report import NOISY_CORES, RESULTS_DIR, machine, source, table

HEADER = ["metric", "tashi", "baseline", "baseline value", "ratio", "goal", "note"]
BOOT_GOAL = 1.05  # boot ratio, tashi / bare
MEMORY_GOAL_MB = 2.0  # node-manager growth per VM


@dataclass(slots=True)
class NodeResults:
    boot: BootResults | None = None
    migration: MigrationResults | None = None
    memory: MemoryResults | None = None
    waits: list[str] = field(default_factory=list)  # measurements taken on a busy machine
    failed: list[str] = field(default_factory=list)  # phases that could not be measured


@dataclass(frozen=True, slots=True)
class NodeRow:
    metric: str
    value: float
    unit: str  # "s", "ms" or "MB"
    baseline: str
    baseline_value: float
    goal: str = ""  # PASS/FAIL and the goal, or empty
    other_cpu: float = 0.0

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else math.nan

    def cells(self) -> list[str]:
        note = f"busy: others used {self.other_cpu:.2f} cores" if self.noisy else ""
        return [
            self.metric,
            _fmt(self.value, self.unit),
            self.baseline,
            _fmt(self.baseline_value, self.unit),
            f"{self.ratio:.2f}x",
            self.goal,
            note,
        ]

    @property
    def noisy(self) -> bool:
        return self.other_cpu >= NOISY_CORES


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


def _verdict(passed: bool, text: str) -> str:
    return f"{'PASS' if passed else 'FAIL'} {text}"


def rows(results: NodeResults) -> list[NodeRow]:
    out: list[NodeRow] = []
    if results.boot is not None:
        out += _boot_rows(results.boot)
    if results.migration is not None:
        out += _migration_rows(results.migration)
    if results.memory is not None:
        out += _memory_rows(results.memory)
    return out


def _boot_rows(boot: BootResults) -> list[NodeRow]:
    tashi, bare = boot.of("tashi"), boot.of("bare")
    if not tashi or not bare:
        return []
    other = max(s.neighbours for s in [*tashi, *bare])
    base = "bare qemu, same argv"

    def row(metric: str, pick: Callable[[BootSample], float], p: float, what: str) -> NodeRow:
        value = percentile([pick(s) for s in tashi], p)
        baseline = percentile([pick(s) for s in bare], p)
        goal = ""
        if metric == "boot to TASHI-GUEST-UP median":
            goal = _verdict(value / baseline <= BOOT_GOAL, f"<= {BOOT_GOAL:.2f}x")
        return NodeRow(metric, value, "s", f"{base} {what}", baseline, goal, other)

    return [
        row("boot to TASHI-GUEST-UP median", lambda s: s.up, 50, "median"),
        row("boot to TASHI-GUEST-UP p90", lambda s: s.up, 90, "p90"),
        row("boot: activateVm answered median", lambda s: s.answered, 50, "launcher returned"),
        row("boot: qemu process forked median", lambda s: s.forked, 50, "forked"),
    ]


def _migration_rows(migration: MigrationResults) -> list[NodeRow]:
    tashi, bare = migration.of("tashi"), migration.of("bare")
    if not tashi or not bare:
        return []
    other = max(s.neighbours for s in [*tashi, *bare])

    def row(
        metric: str, pick: Callable[[MigrationSample], float], p: float, unit: str, base: str
    ) -> NodeRow:
        value = percentile([pick(s) for s in tashi], p)
        baseline = percentile([pick(s) for s in bare], p)
        return NodeRow(metric, value, unit, base, baseline, "", other)

    return [
        row("migration downtime median", lambda s: s.downtime_ms, 50, "ms", "bare QMP migrate"),
        row("migration downtime p90", lambda s: s.downtime_ms, 90, "ms", "bare QMP migrate p90"),
        row("migration total time median", lambda s: s.total, 50, "s", "bare QMP migrate"),
        row("migrateVm to Running median", lambda s: s.whole, 50, "s", "bare target start->run"),
        row("migrateVm to Running p90", lambda s: s.whole, 90, "s", "bare p90"),
        row("migrateVm answered median", lambda s: s.answered, 50, "s", "bare target listening"),
    ]


def _memory_rows(memory: MemoryResults) -> list[NodeRow]:
    n = memory.vms
    idle = "idle tashi-nm after start"
    per_vm = memory.per_vm_mb
    goal = _verdict(per_vm <= MEMORY_GOAL_MB, f"<= {MEMORY_GOAL_MB:.0f} MB/VM")
    qemu = "qemu RSS per VM"
    return [
        NodeRow("tashi-nm RSS, 0 VMs", memory.idle_mb, "MB", idle, memory.started_mb),
        NodeRow(f"tashi-nm RSS, {n} VMs", memory.full_mb, "MB", idle, memory.started_mb),
        NodeRow(f"tashi-nm RSS per VM, 0->{n}", per_vm, "MB", qemu, memory.qemu_avg_mb, goal),
        NodeRow(f"tashi-nm RSS per VM, 1->{n}", memory.marginal_mb, "MB", qemu, memory.qemu_avg_mb),
        NodeRow(
            f"tashi-nm RSS, {n} destroyed",
            memory.after_mb,
            "MB",
            "tashi-nm RSS, 0 VMs",
            memory.idle_mb,
        ),
    ]


def _fmt(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value:,.2f} MB" if abs(value) < 10 else f"{value:,.1f} MB"
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 10 else f"{value:,.1f} ms"
    return f"{value:,.3f} s" if value < 1 else f"{value:,.2f} s"


def print_table(found: list[NodeRow]) -> None:
    print(table([r.cells() for r in found], HEADER))


def save(results: NodeResults, found: list[NodeRow], options: dict[str, Any]) -> Path:
    """Write the run as JSON under ``bench/results/`` (gitignored); return the file."""
    RESULTS_DIR.mkdir(exist_ok=True)
    finished = datetime.now().astimezone()
    quick = "-quick" if options.get("quick") else ""
    document = {
        "finished": finished.isoformat(timespec="seconds"),
        "suite": "nodes",
        "machine": machine(),
        "source": source(),
        "options": options,
        "rows": [{**asdict(r), "ratio": r.ratio, "noisy": r.noisy} for r in found],
        "boot": results.boot.summary() if results.boot else None,
        "migration": results.migration.summary() if results.migration else None,
        "memory": results.memory.summary() if results.memory else None,
        "busy": results.waits,
        "failed": results.failed,
    }
    path = RESULTS_DIR / f"{finished:%Y%m%d-%H%M%S}-nodes{quick}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def missed(found: list[NodeRow]) -> bool:
    return any(r.goal.startswith("FAIL") for r in found)
