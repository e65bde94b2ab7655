"""Boot: from ``activateVm`` to the guest's ``TASHI-GUEST-UP`` console marker, against the same
qemu command started by hand (``bareqemu.py``), alternating, in the same run.

Tashi's side: the instance is created beforehand (untimed); the clock starts when the SDK call
``activateVm`` is issued and stops when the marker appears in the serial log the driver gives
qemu (``VmPaths(<stateDir>/vms/<id>).console``). On the way it notes when ``activateVm``
answered and when the qemu daemon was forked (its start time in ``/proc``, 10 ms ticks), which
splits the figure into control plane, qemu start-up and guest boot. The bare side: the argv the
driver really ran, read from ``/proc/<pid>/cmdline`` of a first Tashi VM and moved to a
directory of its own (``retarget``); its overlay is made before the clock starts (Tashi's is made
while it runs: that is part of what Tashi adds). One untimed warm-up boot of each comes first,
so page-cache misses are nobody's. Every VM is stopped before the next boot: Tashi's through
``destroyVm``, the bare one by pid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.bareqemu import BareVm, Template, alive, cmdline, wait_marker
from bench.cluster import BenchError
from bench.neighbours import Neighbours, cores
from bench.nodecluster import NodeCluster
from tashi.api.schemas import DiskIn, InstanceIn
from tashi.images.markers import UP

BOOT_TIMEOUT = 120.0
NODE = "n1"
_TICKS = os.sysconf("SC_CLK_TCK")  # /proc start times are in these


@dataclass(frozen=True, slots=True)
class BootSample:
    """One timed boot; every time in seconds after the command was issued."""

    kind: str  # "tashi" or "bare"
    up: float  # the console marker seen
    answered: float  # activateVm answered / the qemu launcher returned
    forked: float  # the qemu daemon process was created (10 ms resolution)
    neighbours: float  # cores other processes used meanwhile
    driver_done: float | None = None  # Tashi: the node manager logged qemu started (1 ms)


@dataclass(slots=True)
class BootResults:
    samples: list[BootSample] = field(default_factory=list)
    bare_argv: list[str] = field(default_factory=list)
    tashi_argv: list[str] = field(default_factory=list)
    bare_overlay_seconds: list[float] = field(default_factory=list)

    def of(self, kind: str) -> list[BootSample]:
        return [s for s in self.samples if s.kind == kind]

    def summary(self) -> dict[str, Any]:
        return {
            "samples": [asdict(s) for s in self.samples],
            "tashi_argv": self.tashi_argv,
            "bare_argv": self.bare_argv,
            "bare_overlay_seconds": self.bare_overlay_seconds,
        }


Quiet = Callable[[str], None]  # wait (a while) for quiet neighbours before a measurement
Say = Callable[[str], None]


@dataclass
class BootBench:
    cluster: NodeCluster
    neighbours: Neighbours
    directory: Path  # where the bare VMs live
    memory: int  # MB per VM
    quiet: Quiet
    say: Say
    results: BootResults = field(default_factory=BootResults)
    _count: int = 0

    def run(self, repetitions: int) -> BootResults:
        self.say("[nodes] boot: warm-up (one Tashi VM, one bare qemu)")
        _, template = self._tashi(timed=False)
        self._bare(template, timed=False)
        for n in range(repetitions):
            for kind in ("tashi", "bare"):
                sample = self._tashi()[0] if kind == "tashi" else self._bare(template)
                self.results.samples.append(sample)
                driver = "" if sample.driver_done is None else f", NM {sample.driver_done:.3f} s"
                self.say(
                    f"[nodes] boot {n + 1}/{repetitions} {kind}: up {sample.up:.2f} s (qemu"
                    f" forked {sample.forked:.2f} s{driver}, answered {sample.answered:.3f} s)"
                )
        return self.results

    def _tashi(self, *, timed: bool = True) -> tuple[BootSample, Template]:
        """Boot one VM through the cluster manager; the sample, and the VM as a template."""
        self._count += 1
        cluster = self.cluster
        disks = [DiskIn(uri=cluster.image)]
        inst = cluster.admin.create_vm(
            InstanceIn(name=f"boot-{self._count}", memory=self.memory, disks=disks, nics=[])
        )
        if timed:
            self.quiet("boot tashi")
        before, booted, t0 = self.neighbours.snapshot(), _boottime(), time.monotonic()
        wall = time.time()
        started = cluster.admin.activate_vm(inst.id, NODE)
        answered = time.monotonic()
        pid = started.vmId
        if started.state != "Running" or pid is None:
            raise BenchError(f"activateVm answered {started.state}, vmId {pid}")
        paths = cluster.vm_paths(NODE, inst.id)
        up = wait_marker(paths.console, UP, BOOT_TIMEOUT, lambda: alive(pid))
        after = self.neighbours.snapshot()
        forked = _start_time(pid) - booted
        argv = cmdline(pid)
        cluster.destroy(inst.id)
        self.results.tashi_argv = argv
        image = cluster.vfs / "images" / cluster.image
        node_root = cluster.nodes[NODE].root
        template = Template(argv, paths.state_dir, cluster.overlay(NODE, inst.id), image, node_root)
        load = cores(before, after)
        logged = cluster.nodes[NODE].logged_at(f"instance {inst.id}: qemu pid {pid} started", wall)
        done = None if logged is None else logged - wall
        return BootSample("tashi", up - t0, answered - t0, forked, load, done), template

    def _bare(self, template: Template, *, timed: bool = True) -> BootSample:
        """Boot the template's command by hand; the sample."""
        self._count += 1
        vm = BareVm.prepare(self.directory / f"boot-{self._count}", template)
        try:
            if timed:
                self.quiet("boot bare")
            before, booted, t0 = self.neighbours.snapshot(), _boottime(), time.monotonic()
            vm.launch()
            answered = time.monotonic()
            up = wait_marker(vm.paths.console, UP, BOOT_TIMEOUT, vm.running)
            after = self.neighbours.snapshot()
            assert vm.pid is not None
            forked = _start_time(vm.pid) - booted
        finally:
            vm.stop()
        self.results.bare_argv = vm.argv
        if timed:
            self.results.bare_overlay_seconds.append(vm.overlay_seconds)
        load = cores(before, after)
        return BootSample("bare", up - t0, answered - t0, forked, load)


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _start_time(pid: int) -> float:
    """When ``pid`` was created, in ``CLOCK_BOOTTIME`` seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19]) / _TICKS
