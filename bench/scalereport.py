"""The tables, the JSON file and the plot of ``python -m bench scale`` (``scale.py``).

Two tables, one row per store and step. The first is the heartbeats and what they cost the
cluster manager; the second the single-object calls and lists timed while the heartbeats flow,
as p50/p99 in ms, with the p99 as a ratio to the same call on the empty cluster (the step of 0
hosts) of the same run, and the ``activateGroup`` of 3 VMs (its ratio: to the smallest cluster
measured, the empty one having no host to place on). ``plot_svg`` draws heartbeat p99 and the
answered share of the offered heartbeats against the hosts, one line per store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import table
from bench.scaleprobes import CALLS

BEAT_HEADER = [
    "store",
    "hosts",
    "VMs",
    "hb/s offered → answered",
    "hb p50 / p99 ms",
    "longest gap s",
    "hosts late / seen down / VMs fenced",
    "CM cores",
    "CM ms CPU / hb",
    "CM RSS MB",
    "CM fds",
    "DB conn/s",
    "hollow cores",
    "hollow ms CPU / hb",
    "load avg",
]
CALL_HEADER = ["store", "hosts", *CALLS, "activateGroup(3)", "errors"]


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1e3:,.0f}" if value >= 0.1 else f"{value * 1e3:.1f}"


def _pair(p: dict[str, float]) -> str:
    return f"{_ms(p['p50'])} / {_ms(p['p99'])}"


def _ratio(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or base <= 0:
        return ""
    return f" ({value / base:.1f}x)"


def _fenced(step: dict[str, Any]) -> str:
    """VMs fenced in the window, and since the start when more (older runs: the window's)."""
    total = step.get("vms_fenced_since_start", step["vms_fenced"])
    return str(step["vms_fenced"]) + (f" ({total} in all)" if total > step["vms_fenced"] else "")


def _per_beat(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def beat_rows(stores: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for store in stores:
        for s in store["steps"]:
            hb, cm = s["heartbeats"], s["cm"]
            per_hb = cm["cpu_ms_per_heartbeat"]
            conn = s["db_connections_per_s"]
            rows.append(
                [
                    store["store"],
                    f"{s['hosts']:,}",
                    f"{s['vms']:,}",
                    f"{hb['offered_per_s']:.1f} → {hb['answered_per_s']:.1f}"
                    + (f" ({hb['failed']} failed)" if hb["failed"] else ""),
                    _pair(hb["latency"]),
                    f"{hb['longest_gap']:.1f}" if s["hosts"] else "-",
                    f"{hb['late_hosts']} / {s['hosts_seen_down']} / {_fenced(s)}",
                    f"{cm['cores']:.2f}",
                    _per_beat(per_hb),
                    f"{cm['rss_mb']:.0f}",
                    f"{cm['fds']:,}",
                    f"{conn:.1f}" if conn is not None else "n/a",
                    f"{s['hollow_cores']:.2f}",
                    _per_beat(s.get("hollow", {}).get("cpu_ms_per_heartbeat")),
                    f"{s['loadavg'][0]:.1f}",
                ]
            )
    return rows


def call_rows(stores: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for store in stores:
        steps = store["steps"]
        base = steps[0]["calls"]
        measured = [s for s in steps if s["activate_group"]["count"]]
        group_base = measured[0]["activate_group"]["p99"] if measured else float("nan")
        for s in steps:
            calls = s["calls"]
            cells = [_pair(calls[c]) + _ratio(calls[c]["p99"], base[c]["p99"]) for c in CALLS]
            group = s["activate_group"]
            errors = sum(calls["errors"].values())
            rows.append(
                [
                    store["store"],
                    f"{s['hosts']:,}",
                    *cells,
                    _pair(group) + _ratio(group["p99"], group_base) if group["count"] else "-",
                    str(errors) if errors else "",
                ]
            )
    return rows


def print_tables(stores: list[dict[str, Any]]) -> None:
    print("Heartbeats and the cluster manager (hb = heartbeat; late: > 1.5 periods unanswered):")
    print(table(beat_rows(stores), BEAT_HEADER))
    print()
    print(
        "Single-object calls and lists while the heartbeats flow, p50 / p99 ms"
        " (p99 / the empty cluster's p99):"
    )
    print(table(call_rows(stores), CALL_HEADER))


# --- the plot ----------------------------------------------------------------------------

_W, _H, _PAD = 720, 300, 60
_COLOURS = {"sqlite": "#1f77b4", "postgres": "#d62728"}


def plot_svg(stores: list[dict[str, Any]], path: Path) -> Path:
    """Heartbeat p99 (log scale) and answered/offered against hosts, side by side."""
    panels: list[tuple[str, Callable[[dict[str, Any]], float], bool]] = [
        ("heartbeat p99 (ms, log)", lambda s: s["heartbeats"]["latency"]["p99"] * 1e3, True),
        (
            "answered / offered heartbeats",
            lambda s: s["heartbeats"]["answered_per_s"] / s["heartbeats"]["offered_per_s"],
            False,
        ),
    ]
    width = _W // 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}"'
        ' font-family="sans-serif" font-size="11">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
    ]
    top = max((s["hosts"] for st in stores for s in st["steps"]), default=1) or 1
    for index, (title, value, log) in enumerate(panels):
        series = {
            st["store"]: [(s["hosts"], value(s)) for s in st["steps"] if s["hosts"]]
            for st in stores
        }
        parts += _panel(index * width, width, title, series, top, log)
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
    return path


def _panel(
    left: int,
    width: int,
    title: str,
    series: dict[str, list[tuple[int, float]]],
    top: int,
    log: bool,
) -> list[str]:
    values = [v for points in series.values() for _, v in points if v > 0 and not math.isnan(v)]
    high = max(values, default=1.0)
    low = min(values, default=1.0)
    if log:
        lo, hi = math.floor(math.log10(max(low, 1e-3))), math.ceil(math.log10(high) + 1e-9)
        hi = max(hi, lo + 1)
        scale: tuple[float, float] = (float(lo), float(hi))
    else:
        scale = (0.0, max(1.0, high))
    x0, x1, y0, y1 = left + _PAD, left + width - 15, _H - 40, 30

    def x(hosts: float) -> float:
        return x0 + (x1 - x0) * hosts / top

    def y(v: float) -> float:
        pos = math.log10(max(v, 10 ** scale[0])) if log else v
        return y0 - (y0 - y1) * (pos - scale[0]) / (scale[1] - scale[0])

    out = [
        f'<text x="{left + width / 2}" y="16" text-anchor="middle">{title}</text>',
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>',
        f'<text x="{(x0 + x1) / 2}" y="{_H - 8}" text-anchor="middle">hosts</text>',
    ]
    ticks = (
        [10.0**e for e in range(int(scale[0]), int(scale[1]) + 1)]
        if log
        else [scale[1] * f for f in (0, 0.25, 0.5, 0.75, 1.0)]
    )
    for t in ticks:
        label = f"{t:g}" if log else f"{t:.2f}"
        out.append(f'<text x="{x0 - 5}" y="{y(t) + 4:.1f}" text-anchor="end">{label}</text>')
        out.append(f'<line x1="{x0}" y1="{y(t):.1f}" x2="{x1}" y2="{y(t):.1f}" stroke="#ddd"/>')
    for hosts in sorted({h for points in series.values() for h, _ in points}):
        out.append(f'<text x="{x(hosts):.1f}" y="{y0 + 14}" text-anchor="middle">{hosts}</text>')
    for n, (store, points) in enumerate(series.items()):
        colour = _COLOURS.get(store, "black")
        coords = " ".join(f"{x(h):.1f},{y(v):.1f}" for h, v in points if not math.isnan(v))
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for h, v in points:
            if not math.isnan(v):
                out.append(f'<circle cx="{x(h):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        out.append(f'<text x="{x0 + 10}" y="{y1 + 14 + 14 * n}" fill="{colour}">{store}</text>')
    return out
