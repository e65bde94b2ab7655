"""``python -m bench`` (``make bench``): run the benchmark and print its table.

``--quick`` is a short smoke run (a few hundred requests, 10,000 instances); ``--only`` limits the
run to one store. Prints the results table (``report.py``) and where the CPU went, writes the JSON
under ``bench/results/``, and exits 1 if a floor of issue 2 failed or a store could not be
measured, 130 on Ctrl-C (after stopping every process it started and removing its files).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from dataclasses import asdict

from bench import report, runner
from bench.cluster import Workspace, sigterm_as_interrupt
from bench.cpu import calibrate
from bench.report import StoreResults


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure createVm and getInstances of a real tashi-cm on SQLite and"
        " PostgreSQL, against same-run baselines. See docs/benchmarks.md.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", choices=runner.STORES, help="measure one store only")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (server logs) at the end"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = runner.QUICK if args.quick else runner.FULL
    kinds = [args.only] if args.only else list(runner.STORES)
    done: list[StoreResults] = []
    failed: list[str] = []
    yardstick = [calibrate()]
    workspace = Workspace()
    try:
        with sigterm_as_interrupt():
            for kind in kinds:
                try:
                    done.append(runner.run_store(kind, plan, workspace))
                # A supervision boundary: one store's failure is reported, the other still runs.
                except Exception:  # noqa: BLE001
                    runner.say(f"[{kind}] FAILED:\n{traceback.format_exc()}")
                    failed.append(kind)
    except KeyboardInterrupt:
        runner.say("interrupted: every process started was stopped, temp files removed")
        return 130
    finally:
        if args.keep:
            runner.say(f"kept {workspace.root}")
        else:
            workspace.remove()
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


if __name__ == "__main__":
    sys.exit(main())
