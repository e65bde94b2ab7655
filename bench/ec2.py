"""The EC2 API (issue 16.8): ``python -m bench ec2 [--quick]`` (root; not part of ``all``).

Two parts, each against a baseline measured in the same run, printed as one table:

* ``ec2launch.py``: ``RunInstances`` to the instance running and to its guest's
  ``TASHI-GUEST-UP``, against ``createVm`` of the same VM (goal: median ≤ 1.05x), on a 2-host
  virtual cluster of the part's own;
* ``ec2describe.py``: ``DescribeInstances`` of 1,000 instances, against ``getInstances`` of the
  same 1,000 (goal: p50 ≤ 50 ms), on a lone cluster manager with SQLite.

Percentiles are nearest-rank (``e2eboot.nearest_rank``). One part's failure is reported and the
other still runs; the exit status is 1 when a goal is missed, a part failed or something of the
run was left behind (``ec2launch.leftovers``: namespaces, links, routes, cgroup and state of the
virtual cluster; processes named after the workspace).
"""

from __future__ import annotations

import traceback
from dataclasses import asdict
from typing import Any

from bench import ec2describe, ec2launch
from bench.cluster import Workspace
from bench.e2eboot import nearest_rank, save, uptime
from bench.ec2client import Say
from bench.ec2describe import DescribeResults
from bench.ec2launch import LaunchResults
from bench.report import source, table

GOAL_RATIO = 1.05
GOAL_MS = 50.0
HEADER = ["metric", "tashi", "baseline", "baseline value", "ratio", "goal"]


def run(quick: bool, workspace: Workspace, say: Say) -> int:
    load_before = uptime()
    failed: dict[str, str] = {}
    launch, describe = LaunchResults(), DescribeResults()
    try:
        ec2launch.run(workspace.subdir("launch"), quick, say, launch)
    # A supervision boundary: a part that fails is reported; the other still runs.
    except Exception:  # noqa: BLE001
        failed["launch"] = traceback.format_exc()
        say(f"[ec2] launch part FAILED:\n{failed['launch']}")
    try:
        ec2describe.run(workspace.subdir("describe"), quick, say, describe)
    except Exception:  # noqa: BLE001
        failed["describe"] = traceback.format_exc()
        say(f"[ec2] describe part FAILED:\n{failed['describe']}")
    left = ec2launch.leftovers(launch) + [f"process {pid}" for pid in workspace.strays()]
    found = launch_rows(launch) + describe_rows(describe)
    print(table(found, HEADER))
    document: dict[str, Any] = {
        "options": {"quick": quick},
        "loadavg": {"before": load_before, "after": uptime()},
        "launch": _launch_document(launch),
        "describe": asdict(describe),
        "left_behind": left,
        "failed": failed,
        "rows": found,
    }
    path = save("ec2-quick" if quick else "ec2", document)
    print(f"\nload average before: {load_before}; after: {document['loadavg']['after']}")
    if launch.samples:
        print(split(launch))
    if left:
        print(f"LEFT BEHIND: {left}")
    else:
        print("clean-up checked: no namespace, link, route, cgroup, process or file is left")
    print(f"measured: tashi {source()}; results: {path}")
    missed = any(r[5].startswith("FAIL") for r in found)
    return 1 if missed or failed or left else 0


# --- the table ---------------------------------------------------------------------------------


def _seconds(values: list[float], pct: int) -> float:
    return nearest_rank(values, pct)


#: (label, Sample attribute, the goal judged on its median)
MEASURES = (
    ("running (seen)", "running", True),
    ("Running (entered)", "entered", False),
    ("TASHI-GUEST-UP", "up", True),
)


def launch_rows(results: LaunchResults) -> list[list[str]]:
    ec2, rest = (results.of(side) for side in ec2launch.SIDES)
    if not ec2 or not rest:
        return [["RunInstances vs createVm", "-", "-", "-", "-", "FAIL: none measured"]]
    rows: list[list[str]] = []
    for what, attr, goal in MEASURES:
        for pct in (50, 90):
            judged = goal and pct == 50
            rows.append(
                _ratio_row(what, attr, pct, ("RunInstances", ec2), ("createVm", rest), judged)
            )
    rows.append(_ratio_row("answered", "answered", 50, ("RunInstances", ec2), ("createVm", rest)))
    return rows


Side = tuple[str, list[ec2launch.Sample]]


def _ratio_row(
    what: str, attr: str, pct: int, mine: Side, base: Side, judged: bool = False
) -> list[str]:
    t = _seconds([getattr(s, attr) for s in mine[1]], pct)
    b = _seconds([getattr(s, attr) for s in base[1]], pct)
    label = "median" if pct == 50 else "p90"
    goal = ""
    if judged:
        goal = f"{'PASS' if t / b <= GOAL_RATIO else 'FAIL'} <= {GOAL_RATIO:.2f}x"
    return [
        f"{mine[0]} -> {what} {label}",
        f"{t:.3f} s",
        f"{base[0]} -> {what} {label}",
        f"{b:.3f} s",
        f"{t / b:.2f}x",
        goal,
    ]


def split(results: LaunchResults) -> str:
    """The RunInstances/createVm difference round by round: the median, over the rounds, of
    each round's difference (a round has one launch of each side, one after the other, so a
    drift in the machine's speed between rounds cancels)."""
    ec2, rest = (results.of(side) for side in ec2launch.SIDES)
    rounds = min(len(ec2), len(rest))
    if not rounds:
        return ""

    def paired(attr: str) -> float:
        return _seconds([getattr(ec2[n], attr) - getattr(rest[n], attr) for n in range(rounds)], 50)

    return (
        f"Round by round (median of {rounds} differences), RunInstances entered Running"
        f" {paired('entered'):+.3f} s after createVm ({paired('running'):+.3f} s seen,"
        f" {paired('up'):+.3f} s TASHI-GUEST-UP, answered {paired('answered'):+.3f} s)"
    )


def describe_rows(results: DescribeResults) -> list[list[str]]:
    if len(results.samples.get("running/rest/answer", [])) < results.calls:
        return [["DescribeInstances 1,000", "-", "-", "-", "-", "FAIL: not measured in full"]]
    rows: list[list[str]] = []
    for pair in ec2describe.PAIRS:
        for part, how in (("total", "boto3"), ("answer", "answer only")):
            for pct in (50, 90) if part == "total" or pair.key == "all" else (50,):
                t = _seconds(results.samples[f"{pair.key}/ec2/{part}"], pct) * 1e3
                b = _seconds(results.samples[f"{pair.key}/rest/{part}"], pct) * 1e3
                label = "p50" if pct == 50 else "p90"
                base_how = "SDK" if part == "total" else "answer only"
                goal = ""
                if pair.key == "all" and pct == 50:
                    goal = f"{'PASS' if t <= GOAL_MS else 'FAIL'} <= {GOAL_MS:.0f} ms"
                rows.append(
                    [
                        f"{pair.label} {label} ({how})",
                        f"{t:,.1f} ms",
                        f"{pair.baseline} {label} ({base_how})",
                        f"{b:,.1f} ms",
                        f"{t / b:.2f}x",
                        goal,
                    ]
                )
    first = results.samples.get("all/ec2/first")
    if first:
        rows.append(
            [
                "DescribeInstances 1,000 first call, none kept (answer only)",
                f"{first[0] * 1e3:,.1f} ms",
                "",
                "",
                "",
                "",
            ]
        )
    return rows


def _launch_document(results: LaunchResults) -> dict[str, Any]:
    return {
        "cluster": results.cluster,
        "copies_left_by_terminate": results.copies_left,
        "samples": [asdict(s) for s in results.samples],
    }
