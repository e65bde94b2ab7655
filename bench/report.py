"""The results of one run: one row per (figure, baseline), the issue's floors, the JSON file.

``ratio`` is always Tashi's value divided by the baseline's: below 1 for a throughput means
Tashi reaches that fraction of the floor's rate; above 1 for a latency means Tashi takes that
many times longer. The floors of issue 2 are judged on SQLite only (``FLOORS``). ``runner.py``
collects a ``StoreResults`` per database; ``__main__.py`` prints and saves them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.cpu import CpuUse
from bench.listing import Listing
from bench.load import LoadResult

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(slots=True)
class StoreResults:
    """Everything measured against one database."""

    kind: str
    health: dict[int, LoadResult] = field(default_factory=dict)  # by concurrency
    create: dict[int, LoadResult] = field(default_factory=dict)
    insert_floor: dict[int, dict[str, float]] = field(default_factory=dict)
    listings: dict[int, Listing] = field(default_factory=dict)  # by stored instances
    data_floor: dict[int, dict[str, float | int]] = field(default_factory=dict)
    fill_seconds: dict[int, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "health": {c: r.summary() for c, r in self.health.items()},
            "createVm": {c: r.summary() for c, r in self.create.items()},
            "insert_floor": self.insert_floor,
            "getInstances": {n: r.summary() for n, r in self.listings.items()},
            "data_floor": self.data_floor,
            "fill_seconds": self.fill_seconds,
        }


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    store: str
    value: float
    unit: str  # "/s" or "ms"
    baseline: str
    baseline_value: float
    verdict: str = ""  # PASS / FAIL against a floor of the issue, or empty
    other_cpu: float = 0.0  # cores other processes used while this figure was measured

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    @property
    def note(self) -> str:
        return f"busy machine: others used {self.other_cpu:.2f} cores" if self.noisy else ""

    @property
    def noisy(self) -> bool:
        return self.other_cpu >= NOISY_CORES

    def cells(self) -> list[str]:
        return [
            self.metric,
            self.store,
            _fmt(self.value, self.unit),
            self.baseline,
            _fmt(self.baseline_value, self.unit),
            f"{self.ratio:.2f}x",
            self.verdict,
            self.note,
        ]


@dataclass(frozen=True, slots=True)
class Floor:
    """A figure issue 2 requires on SQLite: ``check(value)`` must hold."""

    text: str
    check: Callable[[float], bool]


FLOORS: dict[str, Floor] = {
    "createVm/s c=16": Floor(">= 300/s", lambda v: v >= 300),
    "createVm p99 c=16": Floor("<= 50 ms", lambda v: v <= 50),
    "getInstances 10,000 median": Floor("<= 300 ms", lambda v: v <= 300),
}
NOISY_CORES = 0.25  # other processes above this share of a core make a figure suspect

HEADER = ["metric", "store", "tashi", "baseline", "baseline value", "ratio", "floor", "note"]


def rows_for(results: StoreResults) -> list[Row]:
    rows: list[Row] = []
    for c, made in results.create.items():
        rows += _create_rows(results, c, made)
    for size, listing in results.listings.items():
        floor = results.data_floor[size]
        other = listing.cpu.share(listing.cpu.other)
        judge = _Judge(results.kind, ok=True, other=other)
        metric, base = f"getInstances {size:,}", "SELECT+orjson"
        median, worst = float(floor["median_ms"]), float(floor["max_ms"])
        rows.append(judge(f"{metric} median", listing.median * 1e3, "ms", f"{base} median", median))
        rows.append(judge(f"{metric} max", listing.worst * 1e3, "ms", f"{base} max", worst))
    return rows


def _create_rows(results: StoreResults, c: int, made: LoadResult) -> list[Row]:
    health, insert = results.health[c], results.insert_floor.get(c)
    other = max(r.cpu.share(r.cpu.other) for r in (made, health))
    judge = _Judge(results.kind, ok=not made.errors and not made.timed_out, other=other)
    http, sql = f"GET /health c={c}", f"SQL INSERT c={c}"
    rate, p50, p99 = made.throughput, made.percentile(50) * 1e3, made.percentile(99) * 1e3
    rows = [judge(f"createVm/s c={c}", rate, "/s", http, health.throughput)]
    if insert:
        rows.append(judge(f"createVm/s c={c}", rate, "/s", sql, insert["throughput_per_s"], False))
    rows.append(judge(f"createVm p50 c={c}", p50, "ms", http, health.percentile(50) * 1e3))
    if insert:
        rows.append(judge(f"createVm p50 c={c}", p50, "ms", sql, insert["p50_ms"], False))
    rows.append(judge(f"createVm p99 c={c}", p99, "ms", http, health.percentile(99) * 1e3))
    client = f"client CPU/health c={c}"
    rows.append(judge(f"client CPU/createVm c={c}", _cpu_ms(made), "ms", client, _cpu_ms(health)))
    return rows


@dataclass(frozen=True, slots=True)
class _Judge:
    """Makes the rows of one phase, judged against the issue's floors (SQLite only)."""

    store: str
    ok: bool  # the phase had no errors and finished within its time limit
    other: float

    def __call__(
        self,
        metric: str,
        value: float,
        unit: str,
        baseline: str,
        baseline_value: float,
        judged: bool = True,
    ) -> Row:
        verdict = ""
        floor = FLOORS.get(metric)
        if judged and floor is not None and self.store == "sqlite":
            passed = self.ok and floor.check(value)
            verdict = f"{'PASS' if passed else 'FAIL'} {floor.text}"
        return Row(metric, self.store, value, unit, baseline, baseline_value, verdict, self.other)


def _cpu_ms(result: LoadResult) -> float:
    return result.cpu.client / max(result.requests, 1) * 1e3


def _fmt(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.2f} ms" if value < 10 else f"{value:,.1f} ms"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(s.rstrip() for s in out)


CPU_HEADER = ["phase", "store", "requests", "errors", "wall s", "client", "tashi-cm", "db", "other"]


def cpu_rows(results: StoreResults) -> list[list[str]]:
    """Who used the two cores during each load phase (1.00 = one core busy all the time)."""
    phases: list[tuple[str, int, int, CpuUse]] = []
    for c, made in results.create.items():
        health = results.health[c]
        phases.append((f"GET /health c={c}", health.requests, health.errors, health.cpu))
        phases.append((f"createVm c={c}", made.requests, made.errors, made.cpu))
    for size, listing in results.listings.items():
        phases.append((f"getInstances {size:,}", len(listing.totals), 0, listing.cpu))
    return [
        [
            what,
            results.kind,
            str(requests),
            str(errors),
            f"{cpu.wall:.1f}",
            f"{cpu.share(cpu.client):.2f}",
            f"{cpu.share(cpu.server):.2f}",
            f"{cpu.share(cpu.db):.2f}",
            f"{cpu.share(cpu.other):.2f}",
        ]
        for what, requests, errors, cpu in phases
    ]


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("tashi", "fastapi", "uvicorn", "sqlalchemy", "httpx", "psycopg", "orjson"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return {
        "host": platform.node(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": versions,
    }


def source() -> str:
    """The commit of the code under test, and whether ``src/`` differs from it: the server runs
    from the working tree, so uncommitted changes are measured too and must be named."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown commit"
    # Tracked files only: a new module nobody imports yet (another engineer's work) is no change.
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    return f"{commit} + uncommitted changes in src/" if dirty else commit


def save(results: list[StoreResults], rows: list[Row], options: dict[str, Any]) -> Path:
    """Write the run as JSON under ``bench/results/`` (gitignored); return the file."""
    RESULTS_DIR.mkdir(exist_ok=True)
    finished = datetime.now().astimezone()
    name = f"{finished:%Y%m%d-%H%M%S}-{'quick' if options.get('quick') else 'full'}.json"
    document = {
        "finished": finished.isoformat(timespec="seconds"),
        "machine": machine(),
        "source": source(),
        "options": options,
        "rows": [{**asdict(r), "ratio": r.ratio, "noisy": r.noisy} for r in rows],
        "stores": {r.kind: r.summary() for r in results},
    }
    path = RESULTS_DIR / name
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
