"""``python -m bench [all|control|nodes|scheduling|scale|e2eboot|boot100|faults|outage|longmem|
ec2]`` (``make bench`` = all): run the benchmark suites and print their tables.

``control`` measures the cluster manager's HTTP API on SQLite and PostgreSQL (``runner.py``);
``nodes`` measures Tashi on real QEMU — boot, live migration, node-manager memory — against bare
QEMU (``nodes.py``); ``scheduling`` the scheduler's placements with thousands of simulated
hosts (``scheduling.py``). ``e2eboot`` and ``boot100`` (root; not part of ``all``) run on a
virtual cluster (``tashi-cluster``): ``createVm`` to the guest's console and DHCP markers against a
bare qemu (``e2eboot.py``), and 100 VMs booted at once against 100 bare qemu (``boot100.py``);
``faults`` (root, not part of ``all``) is the fault-injection suite's long run: rounds of VM churn
while pieces of a virtual cluster are SIGKILLed, every invariant checked (``faults.py``,
``--rounds``, ``--seed``); ``outage`` (root, not part of ``all``) keeps the cluster manager of a
virtual cluster down for ``--minutes`` (10) while its VMs run and a group of 20 is being placed
(``outage.py``); ``longmem`` (root, not part of ``all``) churns 1,000 VMs through a 1-host virtual
cluster, the first 50 on real QEMU, and follows the resident memory of the node manager, the
cluster manager and the scheduler (``longmem.py``, ``--rounds``). ``ec2`` (root, not part of
``all``) times ``RunInstances`` to a running guest against ``createVm`` on a virtual cluster,
and ``DescribeInstances`` of 1,000 instances against ``getInstances`` (``ec2.py``). ``scale``
(not part of ``all``) grows one cluster manager to thousands of hollow hosts, the node manager's
own code over the fake VMM driver, in one process, and times heartbeats and single calls at each
step (``scale.py``; ``--store``, ``--max-hosts``, ``--steps``, ``--vms-per-host``, ``--period``,
``--fill-group-hosts``, ``--fill-concurrency``;
docs/scaling.md). ``--quick``
is a short smoke run of any suite; ``--only`` limits the control suite to one store. Each suite
prints its table and writes its JSON under ``bench/results/``.
The exit status is 1 if a floor or goal of the issues failed or something could not be measured,
130 on Ctrl-C (after stopping every process started and removing the temporary files).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from dataclasses import asdict
from typing import Any

from bench import nodereport, nodes, report, runner, scheduling
from bench.cluster import BenchError, Workspace, sigterm_as_interrupt
from bench.cpu import calibrate
from bench.report import StoreResults

SUITES = (
    "all",
    "control",
    "nodes",
    "scheduling",
    "scale",
    "e2eboot",
    "boot100",
    "faults",
    "outage",
    "longmem",
    "ec2",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Tashi against same-run baselines: the cluster manager's API"
        " (control) and VMs on real QEMU (nodes). See docs/benchmarks.md.",
    )
    parser.add_argument(
        "suite", nargs="?", choices=SUITES, default="all", help="what to measure (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", choices=runner.STORES, help="control: measure one store only")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (server logs) at the end"
    )
    parser.add_argument(
        "--rounds", type=int, help="faults: rounds to run (default 30); longmem: VMs (1000)"
    )
    parser.add_argument("--seed", type=int, help="faults: the random seed (default: a new one)")
    parser.add_argument(
        "--minutes", type=float, help="outage: how long the cluster manager stays down (10)"
    )
    parser.add_argument(
        "--database",
        action="store_true",
        help="outage: stop the cluster manager's database (PostgreSQL) instead of it",
    )
    scale = parser.add_argument_group("scale")
    scale.add_argument(
        "--store", choices=("sqlite", "postgres", "both"), default="both", help="scale: (both)"
    )
    scale.add_argument("--max-hosts", type=int, help="scale: the largest step (2000)")
    scale.add_argument(
        "--steps",
        help="scale: hosts after each step, from 0, e.g. 0,250,500 (overrides --max-hosts)",
    )
    scale.add_argument("--vms-per-host", type=int, help="scale: VMs on each host (15)")
    scale.add_argument("--period", type=float, help="scale: seconds between heartbeats (10)")
    scale.add_argument(
        "--fill-group-hosts", type=int, help="scale: hosts whose VMs start as one group (1)"
    )
    scale.add_argument(
        "--fill-concurrency", type=int, help="scale: fill groups under way at once (8)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    status = 0
    try:
        with sigterm_as_interrupt():
            if args.suite in ("all", "control"):
                status |= _control(args)
            if args.suite in ("all", "nodes"):
                if args.suite == "all":
                    print()
                status |= _nodes(args)
            if args.suite in ("all", "scheduling"):
                if args.suite == "all":
                    print()
                status |= _scheduling(args)
            if args.suite == "scale":
                status |= _scale(args)
            if args.suite in ("e2eboot", "boot100", "faults", "outage", "longmem", "ec2"):
                status |= _virtual(args)
    except KeyboardInterrupt:
        runner.say("interrupted: every process started was stopped, temp files removed")
        return 130
    return status


def _finish(workspace: Workspace, keep: bool) -> None:
    if keep:
        runner.say(f"kept {workspace.root}")
    else:
        workspace.remove()


def _control(args: argparse.Namespace) -> int:
    plan = runner.QUICK if args.quick else runner.FULL
    kinds = [args.only] if args.only else list(runner.STORES)
    done: list[StoreResults] = []
    failed: list[str] = []
    yardstick = [calibrate()]
    workspace = Workspace()
    try:
        for kind in kinds:
            try:
                done.append(runner.run_store(kind, plan, workspace))
            # A supervision boundary: one store's failure is reported, the other still runs.
            except Exception:  # noqa: BLE001
                runner.say(f"[{kind}] FAILED:\n{traceback.format_exc()}")
                failed.append(kind)
    finally:
        _finish(workspace, args.keep)
    yardstick.append(calibrate())
    options = {
        "quick": args.quick,
        "stores": kinds,
        "plan": asdict(plan),
        "yardstick_ms": yardstick,
    }
    return _report(done, failed, yardstick, options)


def _report(
    done: list[StoreResults],
    failed: list[str],
    yardstick: list[float],
    options: dict[str, object],
) -> int:
    rows = [row for results in done for row in report.rows_for(results)]
    print(report.table([r.cells() for r in rows], report.HEADER))
    print()
    print("CPU during each phase, in cores (1.00 = one core busy the whole phase; 2 cores here):")
    cpu = [line for results in done for line in report.cpu_rows(results)]
    print(report.table(cpu, report.CPU_HEADER))
    path = report.save(done, rows, options)
    before, after = yardstick
    print(
        f"\nyardstick (a fixed Python loop; lower is faster): {before:.1f} ms, after {after:.1f} ms"
    )
    print(f"measured: tashi {report.source()}; results: {path}")
    for kind in failed:
        print(f"{kind}: not measured (see the error above)")
    missed = any(r.verdict.startswith("FAIL") for r in rows)
    return 1 if missed or failed else 0


def _nodes(args: argparse.Namespace) -> int:
    plan = nodes.QUICK if args.quick else nodes.FULL
    yardstick = [calibrate()]
    workspace = Workspace()
    try:
        results = nodes.run(plan, workspace, runner.say)
    # A supervision boundary: the cluster could not start; nothing was measured.
    except Exception:  # noqa: BLE001
        runner.say(f"[nodes] FAILED:\n{traceback.format_exc()}")
        return 1
    finally:
        _finish(workspace, args.keep)
    yardstick.append(calibrate())
    rows = nodereport.rows(results)
    nodereport.print_table(rows)
    options = {"quick": args.quick, "plan": asdict(plan), "yardstick_ms": yardstick}
    path = nodereport.save(results, rows, options)
    before, after = yardstick
    print(
        f"\nyardstick (a fixed Python loop; lower is faster): {before:.1f} ms, after {after:.1f} ms"
    )
    if results.waits:
        print(
            f"{len(results.waits)} measurements waited for quiet neighbours in vain and were taken"
            f" anyway (listed in the JSON under 'busy')"
        )
    print(f"measured: tashi {report.source()}; results: {path}")
    for phase in results.failed:
        print(f"nodes {phase}: not measured in full (see the error above)")
    return 1 if nodereport.missed(rows) or results.failed else 0


def _scheduling(args: argparse.Namespace) -> int:
    plan = scheduling.QUICK if args.quick else scheduling.FULL
    yardstick = [calibrate()]
    results = scheduling.run(plan)
    yardstick.append(calibrate())
    before, after = yardstick
    print(
        f"\nyardstick (a fixed Python loop; lower is faster): {before:.1f} ms, after {after:.1f} ms"
    )
    print(f"measured: tashi {report.source()}")
    return 1 if scheduling.missed(results) else 0


def _scale(args: argparse.Namespace) -> int:
    from bench import scale, scalereport

    try:
        steps = tuple(int(s) for s in args.steps.split(",")) if args.steps else None
        plan = scale.plan_for(
            quick=args.quick,
            stores=scale.STORES if args.store == "both" else (args.store,),
            max_hosts=args.max_hosts,
            steps=steps,
            vms_per_host=args.vms_per_host,
            period=args.period,
            fill_group_hosts=args.fill_group_hosts,
            fill_concurrency=args.fill_concurrency,
        )
    except (ValueError, BenchError) as exc:
        runner.say(f"scale: {exc}")
        return 2
    workspace = Workspace()
    done: list[dict[str, Any]] = []
    failed: list[str] = []
    try:
        for kind in plan.stores:
            done.append({"store": kind, "steps": []})
            try:
                done[-1] = scale.run_store(kind, plan, workspace, runner.say, done[-1]["steps"])
            # A supervision boundary: one store's failure is reported, the other still runs.
            except Exception:  # noqa: BLE001
                runner.say(f"[{kind}] FAILED:\n{traceback.format_exc()}")
                failed.append(kind)
    except KeyboardInterrupt:
        failed.append("interrupted")
    finally:
        _finish(workspace, args.keep)
    done = [store for store in done if store["steps"]]  # the steps measured are reported
    scalereport.print_tables(done)
    from bench.e2eboot import save

    path = save("scale", {"options": scale.options(plan), "stores": done, "failed": failed})
    plot = scalereport.plot_svg(done, path.with_suffix(".svg"))
    print(f"\nmeasured: tashi {report.source()}; results: {path}, plot: {plot}")
    for kind in failed:
        print(f"{kind}: not measured in full (see the error above)")
    return 130 if "interrupted" in failed else 1 if failed else 0


def _virtual(args: argparse.Namespace) -> int:
    """e2eboot, boot100, faults, outage, longmem or ec2 on a virtual cluster of the run's own
    (needs root)."""
    import os

    if os.geteuid() != 0:
        runner.say(f"{args.suite}: needs root (tashi-cluster makes namespaces and links)")
        return 1
    from bench import boot100, e2eboot, ec2, faults, longmem, outage

    workspace = Workspace()
    try:
        with e2eboot.sigterm_in_children_default():
            if args.suite == "e2eboot":
                return e2eboot.run(args.quick, workspace, runner.say)
            if args.suite == "ec2":
                return ec2.run(args.quick, workspace, runner.say)
            if args.suite == "longmem":
                return longmem.run(args.rounds, args.quick, workspace, runner.say)
            if args.suite == "faults":
                return faults.run(args.rounds, args.seed, args.quick, workspace, runner.say)
            if args.suite == "outage":
                return outage.run(
                    args.minutes, args.quick, workspace, runner.say, database=args.database
                )
            return boot100.run(args.quick, workspace, runner.say)
    finally:
        _finish(workspace, args.keep)


if __name__ == "__main__":
    sys.exit(main())
