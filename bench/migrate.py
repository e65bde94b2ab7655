"""Live migration: ``migrateVm`` between two node managers on this machine, against a bare QMP
migration of the same guest between two hand-started qemu processes, alternating.

Every migration moves a guest freshly booted to its console marker (untimed), on both sides:
QEMU's downtime here is bimodal (a few ms when it completes right after its first pass over RAM,
50-250 ms when it takes another), and one long-lived guest moved back and forth tends to stay in
one mode for a streak, so a figure from one guest says more about that guest than about Tashi.

Tashi's side: the guest boots on ``n1`` or ``n2`` in turn and moves to the other. The clock
starts when the SDK call ``migrateVm`` is issued; it notes when the call answered
(``MigrateTrans``: the target's incoming qemu runs) and stops when ``getInstance`` (polled every
``POLL`` seconds) shows it Running on the target. QEMU's own total time and
downtime come from the instance history the cluster manager writes (kind ``migrated``).

The bare side does by hand what the driver does, with the driver's QMP settings: the target is
the Tashi VM's argv moved to a directory of its own plus ``-incoming defer`` (as ``build_argv``
adds), ``migrate-incoming tcp:127.0.0.1:<port>``; the source gets block migration with
``block-incremental`` (its overlay is node-local, as in Tashi) and the same bandwidth cap, then
``migrate``; ``query-migrate`` is polled every ``POLL`` seconds until it completes, then the
target's ``query-status`` until it runs. The clock covers the target's start to the target
running; the target's overlay is made before (untimed), both are stopped after.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.bareqemu import BareVm, Template, alive, cmdline, wait_marker
from bench.cluster import BenchError
from bench.neighbours import Neighbours, cores
from bench.nodecluster import NodeCluster, wait_for
from tashi.api.schemas import DiskIn, InstanceIn
from tashi.images.markers import UP
from tashi.runtime.ports import free_port

POLL = 0.02  # seconds between status polls, either side
MIGRATE_TIMEOUT = 120.0
BOOT_TIMEOUT = 120.0
BANDWIDTH_MB = 1024  # [Qemu] migrateBandwidth's default, which the node managers run with
_RECORD = re.compile(r" in (?P<total>[0-9.]+) s, downtime (?P<downtime>[0-9.]+) ms")

Quiet = Callable[[str], None]
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class MigrationSample:
    kind: str  # "tashi" or "bare"
    whole: float  # seconds: command issued / target started -> Running on the target
    answered: float  # seconds until migrateVm answered (bare: the target qemu was up)
    total: float  # QEMU's total time of the migration, seconds
    downtime_ms: float  # QEMU's downtime
    neighbours: float  # cores other processes used meanwhile
    target_started: float | None = None  # Tashi: the target node logged its qemu started
    source_ended: float | None = None  # Tashi: the source node logged its qemu ended


@dataclass(slots=True)
class MigrationResults:
    samples: list[MigrationSample] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # the cluster manager's history lines

    def of(self, kind: str) -> list[MigrationSample]:
        return [s for s in self.samples if s.kind == kind]

    def summary(self) -> dict[str, Any]:
        return {"samples": [asdict(s) for s in self.samples], "history": self.records}


@dataclass
class MigrationBench:
    cluster: NodeCluster
    neighbours: Neighbours
    directory: Path
    memory: int
    quiet: Quiet
    say: Say
    results: MigrationResults = field(default_factory=MigrationResults)

    def run(self, repetitions: int) -> MigrationResults:
        self.say("[nodes] migration: a freshly booted guest for every migration")
        template: Template | None = None
        for n in range(repetitions):
            source, target = ("n1", "n2") if n % 2 == 0 else ("n2", "n1")
            ref, made = self._boot_tashi(n + 1, source)
            template = template or made  # the first, on n1: what the bare side runs
            sample = self._tashi(ref, target)
            self.cluster.destroy(ref)
            self._record(n, repetitions, sample)
            self._record(n, repetitions, self._bare(template, n + 1))
        return self.results

    def _record(self, n: int, repetitions: int, sample: MigrationSample) -> None:
        self.results.samples.append(sample)
        self.say(f"[nodes] migration {n + 1}/{repetitions} {sample.kind}: {_line(sample)}")

    def _boot_tashi(self, n: int, node: str) -> tuple[int, Template]:
        cluster = self.cluster
        disks = [DiskIn(uri=cluster.image)]
        inst = cluster.admin.create_vm(
            InstanceIn(name=f"migrating-{n}", memory=self.memory, disks=disks, nics=[])
        )
        pid = cluster.admin.activate_vm(inst.id, node).vmId
        if pid is None:
            raise BenchError("activateVm gave no qemu pid")
        paths = cluster.vm_paths(node, inst.id)
        wait_marker(paths.console, UP, BOOT_TIMEOUT, lambda: alive(pid))
        image = cluster.vfs / "images" / cluster.image
        overlay = cluster.overlay(node, inst.id)
        root = cluster.nodes[node].root
        return inst.id, Template(cmdline(pid), paths.state_dir, overlay, image, root)

    def _tashi(self, ref: int, target: str) -> MigrationSample:
        admin = self.cluster.admin
        target_id = admin.get_host(target).id
        was = admin.get_instance(ref)
        source = next(h.name for h in admin.get_hosts() if h.id == was.hostId)
        seen = len(self._migrated(ref))
        self.quiet("migrateVm")
        before, t0, wall = self.neighbours.snapshot(), time.monotonic(), time.time()
        answer = admin.migrate_vm(ref, target)
        answered = time.monotonic()
        if answer.state != "MigrateTrans":
            raise BenchError(f"migrateVm answered {answer.state}")

        def arrived() -> bool:
            now = admin.get_instance(ref)
            if now.state == "Running" and now.hostId != target_id:
                raise BenchError(f"the migration failed: {self._history(ref)[-1:]}")
            return now.state == "Running"

        wait_for(f"instance {ref} Running on {target}", arrived, MIGRATE_TIMEOUT, every=POLL)
        done = time.monotonic()
        after = self.neighbours.snapshot()
        records = wait_for("the migration record", lambda: self._migrated(ref)[seen:], 10.0)
        self.results.records.append(records[0])
        match = _RECORD.search(records[0])
        if match is None:
            raise BenchError(f"cannot read the history record {records[0]!r}")
        total, downtime = float(match["total"]), float(match["downtime"])
        load = cores(before, after)
        nodes = self.cluster.nodes
        started = nodes[target].logged_at(f"instance {ref}: qemu pid", wall)
        ended = nodes[source].logged_at(f"instance {ref}: qemu pid {was.vmId} ended", wall)
        return MigrationSample(
            "tashi",
            done - t0,
            answered - t0,
            total,
            downtime,
            load,
            None if started is None else started - wall,
            None if ended is None else ended - wall,
        )

    def _history(self, ref: int) -> list[dict[str, Any]]:
        return self.cluster.history(ref)

    def _migrated(self, ref: int) -> list[str]:
        return [str(e["message"]) for e in self._history(ref) if e["kind"] == "migrated"]

    def _bare(self, template: Template, n: int) -> MigrationSample:
        source = BareVm.prepare(self.directory / f"mig-{n}-source", template)
        target: BareVm | None = None
        try:
            source.launch()
            wait_marker(source.paths.console, UP, BOOT_TIMEOUT, source.running)
            target = BareVm.prepare(self.directory / f"mig-{n}-target", template, incoming=True)
            uri = f"tcp:127.0.0.1:{free_port()}"
            self.quiet("bare migrate")
            before, t0 = self.neighbours.snapshot(), time.monotonic()
            target.launch()
            target.qmp("migrate-incoming", {"uri": uri})
            answered = time.monotonic()
            info = _migrate(source, uri)
            _wait_running(target)
            done = time.monotonic()
            after = self.neighbours.snapshot()
        finally:
            source.stop()
            if target is not None:
                target.stop()
        total, downtime = float(info["total-time"]) / 1e3, float(info["downtime"])
        load = cores(before, after)
        return MigrationSample("bare", done - t0, answered - t0, total, downtime, load)


def _line(s: MigrationSample) -> str:
    nodes = ""
    if s.target_started is not None and s.source_ended is not None:
        nodes = f", target qemu up {s.target_started:.2f} s, source ended {s.source_ended:.2f} s"
    return (
        f"Running after {s.whole:.2f} s (answered {s.answered:.2f} s{nodes}),"
        f" QEMU total {s.total:.2f} s, downtime {s.downtime_ms:.0f} ms"
    )


def _migrate(source: BareVm, uri: str) -> dict[str, Any]:
    """The driver's migration, by hand (``transfer._configure`` and ``send``)."""
    capabilities = [{"capability": "block", "state": True}]
    source.qmp("migrate-set-capabilities", {"capabilities": capabilities})
    parameters = {"block-incremental": True, "max-bandwidth": BANDWIDTH_MB * 2**20}
    source.qmp("migrate-set-parameters", parameters)
    source.qmp("migrate", {"uri": uri})
    deadline = time.monotonic() + MIGRATE_TIMEOUT
    while True:
        info: dict[str, Any] = source.qmp("query-migrate")
        if info.get("status") == "completed":
            return info
        if info.get("status") in ("failed", "cancelled"):
            raise BenchError(f"bare migration {info.get('status')}: {info.get('error-desc')}")
        if time.monotonic() > deadline:
            raise BenchError(f"bare migration still {info.get('status')} after the deadline")
        time.sleep(POLL)


def _wait_running(target: BareVm) -> None:
    """Until the target runs (QEMU starts it by itself unless it came in paused)."""

    def running() -> bool:
        status = str(target.qmp("query-status")["status"])
        if status not in ("running", "inmigrate"):
            target.qmp("cont")
        return status == "running"

    wait_for("the bare target to run", running, MIGRATE_TIMEOUT, every=POLL)
