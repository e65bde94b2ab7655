"""The fault-injection suite's long run (issue 14.6): ``python -m bench faults [--rounds N]
[--seed S]`` (root; not part of ``all``).

A 3-host ``tashi-cluster`` of the run's own (fabric 198.18.144.0/20, state directory in the
run's workspace, started and stopped with the command line, as ``tashi/devcluster/harness.py``
does it; real QEMU guests, the default HA timings: 6 s lease), then ``FaultRun``
(``tashi.devcluster.faultrun``) for N rounds (30 by default, 5 with ``--quick``): in each a
churn of VMs (create, createMany, migrate, suspend, resume, destroy) while one piece of the
cluster (cluster manager, scheduler, a node manager, a dnsmasq) is SIGKILLed at a random moment
and started again, then every invariant is checked. It prints one line per round and a
summary: rounds, faults injected by kind, operations done, invariant violations (goal: 0) and
the time; the JSON goes to ``bench/results/<date>-faults[-quick].json``. With violations the
cluster's logs are copied to ``<workspace>/logs`` (kept with ``--keep``) and the exit status is
1. The seed is printed first: ``--seed`` replays a run's decisions.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bench.cluster import BenchError, Workspace
from bench.e2eboot import save
from bench.nodecluster import tiny_image
from bench.report import source, table
from tashi.devcluster import fabric
from tashi.devcluster.faultrun import FaultRun, Plan, Report, keep_logs
from tashi.devcluster.harness import LEASE, ha_options, running_cluster

Say = Callable[[str], None]
FABRIC = "198.18.144.0/20"  # the test's is 198.18.128.0/20
FULL_ROUNDS = 30
QUICK_ROUNDS = 5
ROUND_HEADER = ["round", "fault", "away", "host", "operations", "VMs", "violations", "time"]


def run(rounds: int | None, seed: int | None, quick: bool, workspace: Workspace, say: Say) -> int:
    count = rounds if rounds is not None else QUICK_ROUNDS if quick else FULL_ROUNDS
    if fabric.overlapping_routes(ipaddress.IPv4Network(FABRIC)):
        raise BenchError(f"the root namespace routes {FABRIC} already (another run?)")
    options = ha_options(FABRIC, tiny_image(say))
    plan = Plan(rounds=count, seed=seed, lease=LEASE)
    began = time.monotonic()
    with running_cluster(workspace.subdir("faults"), 3, options) as cluster:
        prefix = f"{fabric.PREFIX}{cluster.state.tag}-"  # the state file goes with `stop`
        report = FaultRun(cluster, plan, say).run()
        if report.violations:
            say(f"logs kept in {keep_logs(cluster.layout, workspace.root / 'logs')}")
    left = [n for n in fabric.namespaces() if n.startswith(prefix)]
    wall = time.monotonic() - began
    print_tables(report, wall)
    name = "faults-quick" if quick and rounds is None else "faults"
    path = save(name, document(report, plan, wall, left))
    print(f"measured: tashi {source()}; results: {path}")
    if left:
        print(f"left behind: namespaces {left}")
    return 1 if report.violations or left else 0


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v) or "none"


def print_tables(report: Report, wall: float) -> None:
    rows = [
        [
            str(r.number),
            r.fault.target,
            f"{r.outage.length:.1f} s" if r.outage.length is not None else "?",
            "crashed" if r.crashed else "",
            " ".join(r.ops),
            str(r.instances),
            str(len(r.violations)),
            f"{r.seconds:.0f} s",
        ]
        for r in report.rounds
    ]
    print(table(rows, ROUND_HEADER))
    faults = report.faults
    crashed = faults.pop("nm (host crashed)", 0)
    violations = len(report.violations)
    summary = [
        ["seed", str(report.seed)],
        ["rounds", str(len(report.rounds))],
        [
            "faults injected",
            f"{sum(faults.values())}: {_kinds(dict(faults))} (hosts crashed: {crashed})",
        ],
        [
            "operations done",
            f"{sum(report.ops.values())}: {_kinds(dict(report.ops))}",
        ],
        [
            "operations refused",
            f"{sum(report.refused.values())}: {_kinds(dict(report.refused))}",
        ],
        ["requests retried (no answer)", str(report.retries)],
        ["invariant violations", f"{violations} ({'PASS' if not violations else 'FAIL'}, goal 0)"],
        ["time", f"{wall:.0f} s ({report.seconds / max(1, len(report.rounds)):.1f} s a round)"],
    ]
    print()
    print(table(summary, ["fault injection", "result"]))
    for violation in report.violations:
        print(f"VIOLATION {violation}")


def document(report: Report, plan: Plan, wall: float, left: list[str]) -> dict[str, Any]:
    return {
        "seed": report.seed,
        "plan": asdict(plan),
        "seconds": wall,
        "faults": dict(report.faults),
        "operations": dict(report.ops),
        "refused": dict(report.refused),
        "retries": report.retries,
        "violations": report.violations,
        "left": left,
        "rounds": [
            {
                "number": r.number,
                "fault": {**asdict(r.fault), "kind": r.fault.kind.value},
                "killed": r.outage.killed,
                "added": r.outage.added,
                "back": r.outage.back,
                "away": r.outage.length,
                "error": r.outage.error,
                "crashed": r.crashed,
                "operations": r.ops,
                "instances": r.instances,
                "violations": r.violations,
                "seconds": r.seconds,
            }
            for r in report.rounds
        ],
    }
