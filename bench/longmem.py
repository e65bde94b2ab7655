"""Long-run memory (issue 26.1): ``python -m bench longmem [--quick] [--rounds N]`` (root; not
part of ``all``): do ``tashi-nm``, ``tashi-cm`` and ``tashi-scheduler`` keep their size while
VMs come and go by the thousand?

A 1-host ``tashi-cluster`` of the run's own (fabric 198.18.192.0/20, state in the run's
workspace, as ``tashi/devcluster/harness.py`` starts it): the real cluster manager, scheduler,
dnsmasq and node manager, whose ``vxlan`` network driver makes a tap per VM. VMs are churned one
at a time through the scheduler: ``createVm`` with one NIC, until Running, ``destroyVm``, until
gone. The first ``REAL`` (100) are real QEMU guests, each destroyed once its console says it is up
(``TASHI-GUEST-UP``); then the node manager is started again with the fake VMM driver (its
``nm.cfg`` edited between ``tashi-cluster rm nm:1`` and ``add nm:1``: the same host, taps still
made by the vxlan driver) and churns the rest, to 1,000 (``--rounds``).

The resident set (``VmRSS``, MB of 10^6 bytes) of each process is read after every real VM and
every ``EVERY`` fake ones.
Growth is counted from the end of a warm-up (the first ``WARMUP_REAL`` VMs of the real part,
``WARMUP_FAKE`` of the fake part, ``WARMUP`` of the whole run for the cluster manager and the
scheduler) to the end; the goal is under 2 MB for each. The baseline, measured in the same run
before any VM: the same processes left idle for ``IDLE`` seconds (heartbeats, the scheduler's
long-poll), what they grow by doing nothing. The table says the growth per VM too: the leak
issue 26 found (the netlink ACKs pyroute2 left unread) was 74 KB a VM, 3.7 MB over 50 real VMs.
The real part is 100 VMs with a warm-up of 25 because the node manager's C heap still grows to
about the 40th QEMU VM (two runs of 50 with a warm-up of 10 grew 1.79 and 1.91 MB, all of it
before VM 40, flat after): the part must be long enough to show the level it settles at.

The fake part's warm-up is 300 VMs because of one step CPython takes once in a process's life:
the table of interned strings, 90 % full once a node manager has imported what it needs (39,493
strings in 2^16 slots, room for 2,770 more), is rebuilt twice as large (+0.96 MB: 1.9 MB of
table for the 1 MB it replaces) when that room is used up, and every ``pathlib`` path interns
each of its parts (``sys.intern`` in Python 3.11's ``PurePath._parse_args``), so each VM's own
directory, disk and state-file names take about ten places, given back as dummies when the paths
go. The room is used up at about the 285th VM; after it the table has room for 87,000 and is
only ever rebuilt at the same size. (Seen with gdb on a running ``tashi-nm``: the table's size
and use, and a breakpoint on ``PyDict_SetDefault`` of the table naming who interned what.) With
a warm-up of 50 the part grew +1.45 and +2.06 MB in two runs; three runs of the fake part alone
stepped by +1.0 to +1.2 MB between VMs 250 and 290, and were flat after (to 330, 400 and 500).
"""

from __future__ import annotations

import configparser
import ipaddress
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.bareqemu import wait_marker
from bench.cluster import BenchError, Workspace
from bench.e2eboot import save
from bench.nodecluster import tiny_image, wait_for
from bench.report import source, table
from tashi.api.schemas import DiskIn, InstanceIn, NicIn
from tashi.devcluster import fabric
from tashi.devcluster.harness import Running, ha_options, running_cluster
from tashi.images.markers import UP

Say = Callable[[str], None]
FABRIC = "198.18.192.0/20"
IMAGE = "tashi-tiny.qcow2"
HOST = 1
ROUNDS, QUICK_ROUNDS = 1000, 100
REAL, QUICK_REAL = 100, 10
WARMUP_REAL, WARMUP_FAKE, WARMUP = 25, 300, 50
EVERY = 10
IDLE, QUICK_IDLE = 60.0, 15.0
GOAL_MB = 2.0
MEMORY = 128  # MB per VM
RUNNING_TIMEOUT = 120.0
BOOT_TIMEOUT = 120.0
GONE_TIMEOUT = 60.0
HEADER = ["process", "part", "VMs", "after warm-up", "at end", "growth", "per VM", "verdict"]


@dataclass(slots=True)
class Series:
    """One process's RSS through a part, each reading with the count of VMs done by then."""

    process: str
    part: str
    warmup: int
    samples: list[tuple[int, float]] = field(default_factory=list)

    @property
    def vms(self) -> int:
        return self.samples[-1][0] if self.samples else 0

    def at(self, count: int) -> float:
        """The first reading at or after ``count`` VMs."""
        return next(mb for n, mb in self.samples if n >= count)

    @property
    def growth_mb(self) -> float:
        return self.samples[-1][1] - self.at(self.warmup)

    @property
    def per_vm_kb(self) -> float:
        return self.growth_mb * 1000 / max(self.vms - self.warmup, 1)

    def row(self) -> list[str]:
        ok = self.growth_mb < GOAL_MB
        return [
            self.process,
            self.part,
            f"{self.vms}",
            f"{self.at(self.warmup):.1f} MB",
            f"{self.samples[-1][1]:.1f} MB",
            f"{self.growth_mb:+.2f} MB",
            f"{self.per_vm_kb:+.1f} KB",
            f"{'PASS' if ok else 'FAIL'} (< {GOAL_MB:.0f} MB after {self.warmup} VMs)",
        ]


@dataclass(slots=True)
class Results:
    idle_seconds: float
    idle: dict[str, tuple[float, float]] = field(default_factory=dict)  # process: before, after
    series: list[Series] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # part: wall time


def run(rounds: int | None, quick: bool, workspace: Workspace, say: Say) -> int:
    total = rounds if rounds is not None else QUICK_ROUNDS if quick else ROUNDS
    real = min(QUICK_REAL if quick else REAL, total)
    if fabric.overlapping_routes(ipaddress.IPv4Network(FABRIC)):
        raise BenchError(f"the root namespace routes {FABRIC} already (another run?)")
    options = ha_options(FABRIC, tiny_image(say))
    results = Results(QUICK_IDLE if quick else IDLE)
    with running_cluster(workspace.subdir("longmem"), 1, options) as cluster:
        _idle(cluster, results, say)
        control = [
            Series("tashi-cm", "whole run", WARMUP),
            Series("tashi-scheduler", "whole run", WARMUP),
        ]
        results.series += control
        nm = Series("tashi-nm", f"QEMU, {real} VMs", min(WARMUP_REAL, real // 2))
        results.series.append(nm)
        _churn(cluster, range(real), nm, control, results, say, real=True)
        if total > real:
            _with_fake_vmm(cluster, say)
            warmup = min(WARMUP_FAKE, (total - real) // 2)
            fake = Series("tashi-nm", f"fake VMM, {total - real} VMs", warmup)
            results.series.append(fake)
            _churn(cluster, range(real, total), fake, control, results, say, real=False)
        prefix = f"{fabric.PREFIX}{cluster.state.tag}-"
    left = [n for n in fabric.namespaces() if n.startswith(prefix)]
    print_table(results)
    name = "longmem-quick" if quick and rounds is None else "longmem"
    path = save(name, {"rounds": total, "real": real, "left": left, **_document(results)})
    print(f"measured: tashi {source()}; results: {path}")
    if left:
        print(f"left behind: namespaces {left}")
    missed = any(s.growth_mb >= GOAL_MB for s in results.series)
    return 1 if missed or left else 0


def _pids(cluster: Running) -> dict[str, int]:
    state = cluster.state
    return {
        "tashi-nm": state.hosts[HOST].pid,
        "tashi-cm": state.daemons["tashi-cm"].pid,
        "tashi-scheduler": state.daemons["tashi-scheduler"].pid,
    }


def _rss(cluster: Running) -> dict[str, float]:
    from tashi.devcluster.processes import rss_mb

    return {name: rss_mb(pid) for name, pid in _pids(cluster).items()}


def _idle(cluster: Running, results: Results, say: Say) -> None:
    say(f"[longmem] idle for {results.idle_seconds:.0f} s (the baseline)")
    before = _rss(cluster)
    time.sleep(results.idle_seconds)
    after = _rss(cluster)
    results.idle = {name: (before[name], after[name]) for name in before}


def _churn(
    cluster: Running,
    numbers: range,
    nm: Series,
    control: list[Series],
    results: Results,
    say: Say,
    *,
    real: bool,
) -> None:
    began, every = time.monotonic(), 1 if real else EVERY  # real VMs are few: read each
    say(f"[longmem] {nm.part}: VMs {numbers.start + 1} to {numbers.stop}")
    for count, number in enumerate(numbers, start=1):
        _one_vm(cluster, number, real=real)
        if count % every == 0 or number == numbers.stop - 1:
            rss = _rss(cluster)
            nm.samples.append((count, rss["tashi-nm"]))
            for series in control:
                series.samples.append((number + 1, rss[series.process]))
            if count % (10 * EVERY) == 0 or number == numbers.stop - 1:
                line = ", ".join(f"{name} {mb:.1f} MB" for name, mb in rss.items())
                say(f"[longmem]   {number + 1} VMs: {line}")
    results.seconds[nm.part] = time.monotonic() - began


def _one_vm(cluster: Running, number: int, *, real: bool) -> None:
    admin = cluster.admin
    request = InstanceIn(
        name=f"mem-{number}", memory=MEMORY, disks=[DiskIn(uri=IMAGE)], nics=[NicIn(network=1)]
    )
    inst = admin.create_vm(request)

    def running() -> bool:
        state = admin.get_instance(inst.id).state
        if state in ("Exited", "Orphaned"):
            raise BenchError(f"instance {inst.name} became {state}")
        return state == "Running"

    wait_for(f"{inst.name} to run", running, RUNNING_TIMEOUT, every=0.05)
    if real:
        console = cluster.layout.console(HOST, inst.id)
        wait_marker(console, UP, BOOT_TIMEOUT, lambda: True)
    admin.destroy_vm(inst.id)
    gone = lambda: not any(i.id == inst.id for i in admin.get_instances())  # noqa: E731
    wait_for(f"{inst.name} to be gone", gone, GONE_TIMEOUT, every=0.05)


def _with_fake_vmm(cluster: Running, say: Say) -> None:
    """Start the host's node manager again with ``[NodeManager] vmm = fake`` (no VM runs)."""
    say("[longmem] the node manager again, with the fake VMM driver")
    for args in (("rm", f"nm:{HOST}"), ("add", f"nm:{HOST}")):
        result = cluster.cli(*args)
        if result.returncode != 0:
            raise BenchError(f"tashi-cluster {' '.join(args)}: {result.stdout}{result.stderr}")
        if args[0] == "rm":
            config = cluster.layout.host(HOST) / "nm.cfg"
            parser = configparser.ConfigParser(interpolation=None)
            parser.optionxform = str  # type: ignore[assignment,method-assign]
            parser.read(config)
            parser["NodeManager"]["vmm"] = "fake"
            with config.open("w") as out:
                parser.write(out)


def print_table(results: Results) -> None:
    idle = [
        [
            name,
            f"idle {results.idle_seconds:.0f} s",
            "0",
            f"{before:.1f} MB",
            f"{after:.1f} MB",
            f"{after - before:+.2f} MB",
            "",
            "baseline",
        ]
        for name, (before, after) in results.idle.items()
    ]
    print(table(idle + [s.row() for s in results.series], HEADER))
    for part, seconds in results.seconds.items():
        print(f"{part}: {seconds:.0f} s")


def _document(results: Results) -> dict[str, Any]:
    return {
        "idle_seconds": results.idle_seconds,
        "idle": results.idle,
        "seconds": results.seconds,
        "series": [
            {**asdict(s), "growth_mb": s.growth_mb, "per_vm_kb": s.per_vm_kb}
            for s in results.series
        ],
    }
