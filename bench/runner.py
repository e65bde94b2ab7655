"""The phases of one benchmark run against one database, in order, with everything cleaned up.

For each store: start the database server (PostgreSQL, from ``tests/fixtures/dbservers.py``) and
a ``tashi-cm`` on it (``cluster.py``); at each concurrency the ``GET /health`` baseline then
``createVm`` (``load.py``); the ``INSERT`` floors (``floors.py``) while the server idles; then for
each store size, fill up with ``createMany``, time ``getInstances`` and its data floor
(``listing.py``, ``floors.py``). Every process started here is stopped by pid when the store's
``ExitStack`` unwinds, on success, failure or Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

from bench import floors, listing, load
from bench.cluster import CmProcess, Database, Workspace, start_cm
from bench.cpu import CpuMeter, wait_for_quiet
from bench.load import Budget
from bench.report import StoreResults

STORES = ("sqlite", "postgres")
BENCH_DATABASE = "tashi_bench"


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure: ``FULL`` for the figures in docs/benchmarks.md, ``QUICK`` to smoke."""

    concurrencies: tuple[int, ...]
    create: Budget
    health: Budget
    sizes: tuple[int, ...]
    repetitions: int
    max_batch: int
    quiet_wait: float  # seconds a phase may wait for the rest of the machine to calm down


FULL = Plan(
    concurrencies=(1, 16),
    create=Budget(requests=3000, seconds=60.0, warmup=100),
    health=Budget(requests=3000, seconds=60.0, warmup=100),
    sizes=(10_000, 100_000),
    repetitions=5,
    max_batch=5000,
    quiet_wait=120.0,
)
QUICK = Plan(
    concurrencies=(1, 16),
    create=Budget(requests=300, seconds=10.0, warmup=20),
    health=Budget(requests=300, seconds=10.0, warmup=20),
    sizes=(10_000,),
    repetitions=2,
    max_batch=5000,
    quiet_wait=5.0,
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


QUIET_THRESHOLD = 0.25  # cores used by other processes that count as a quiet machine


def _quiet(plan: Plan, kind: str, what: str) -> None:
    """Let the phase ``what`` start when other processes leave the machine (mostly) idle."""
    load = wait_for_quiet(plan.quiet_wait, QUIET_THRESHOLD)
    if load >= QUIET_THRESHOLD:
        say(f"[{kind}] {what}: other processes use {load:.2f} cores; measuring anyway")


def run_store(kind: str, plan: Plan, workspace: Workspace) -> StoreResults:
    results = StoreResults(kind)
    with contextlib.ExitStack() as stack:
        directory = workspace.subdir(kind)
        db, db_pid = _database(kind, workspace, stack)
        say(f"[{kind}] starting tashi-cm")
        cm = start_cm(directory, db, max_batch=plan.max_batch)
        stack.callback(cm.stop)
        say(f"[{kind}] tashi-cm pid {cm.pid} serving {cm.base_url}")
        url = db.url or f"sqlite:///{cm.state_dir / 'tashi.sqlite'}"
        meter = CpuMeter(cm.pid, db_pid)
        _load_phases(cm, meter, plan, results)
        _floor_phases(url, plan, results)
        _listing_phases(cm, meter, url, plan, results)
    return results


def _database(
    kind: str, workspace: Workspace, stack: contextlib.ExitStack
) -> tuple[Database, int | None]:
    """The store's database (``[SQL]`` options, URL) and the pid of its server, if any."""
    if kind == "sqlite":
        return Database(kind, uri="", password="", url=""), None
    from tests.fixtures.dbservers import start_postgres

    say(f"[{kind}] starting PostgreSQL")
    server = start_postgres(workspace.root)
    stack.callback(server.stop)
    url = server.create_database(BENCH_DATABASE)
    return Database(kind, server.uri(BENCH_DATABASE), server.password, url), server.pid


def _load_phases(cm: CmProcess, meter: CpuMeter, plan: Plan, results: StoreResults) -> None:
    for c in plan.concurrencies:
        _quiet(plan, results.kind, f"GET /health c={c}")
        health = load.measure(cm, meter, "health", load.health(cm), c, plan.health, expect=200)
        results.health[c] = health
        _said(results.kind, f"GET /health c={c}", health)
        _quiet(plan, results.kind, f"createVm c={c}")
        made = load.measure(cm, meter, "createVm", load.create_vm(cm, f"c{c}"), c, plan.create, 201)
        results.create[c] = made
        _said(results.kind, f"createVm c={c}", made)


def _said(kind: str, what: str, result: load.LoadResult) -> None:
    errors = f", {result.errors} errors ({result.first_error})" if result.errors else ""
    late = ", cut by the time limit" if result.timed_out else ""
    say(
        f"[{kind}] {what}: {result.requests} requests in {result.cpu.wall:.1f} s,"
        f" {result.throughput:,.0f}/s, p50 {result.percentile(50) * 1e3:.2f} ms,"
        f" p99 {result.percentile(99) * 1e3:.2f} ms{errors}{late}"
    )


def _floor_phases(url: str, plan: Plan, results: StoreResults) -> None:
    for c in plan.concurrencies:
        _quiet(plan, results.kind, f"SQL INSERT c={c}")
        floor = floors.insert_floor(url, c, plan.create.requests, plan.create.seconds)
        results.insert_floor[c] = floor
        say(
            f"[{results.kind}] SQL INSERT c={c}: {floor['throughput_per_s']:,.0f}/s,"
            f" p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms"
        )


def _listing_phases(
    cm: CmProcess, meter: CpuMeter, url: str, plan: Plan, results: StoreResults
) -> None:
    kind = results.kind
    for size in plan.sizes:
        say(f"[{kind}] filling the store to {size:,} instances (createMany x {plan.max_batch})")
        results.fill_seconds[size] = seconds = listing.fill_to(cm, size, plan.max_batch)
        say(f"[{kind}] filled in {seconds:.1f} s; timing getInstances")
        _quiet(plan, kind, f"getInstances {size:,}")
        timed = listing.time_listing(cm, meter, size, plan.repetitions)
        results.listings[size] = timed
        _quiet(plan, kind, f"SELECT+orjson {size:,}")
        floor = floors.data_floor(url, size, plan.repetitions)
        results.data_floor[size] = floor
        say(
            f"[{kind}] getInstances {size:,}: median {timed.median * 1e3:.1f} ms,"
            f" max {timed.worst * 1e3:.1f} ms; SELECT+orjson median"
            f" {floor['median_ms']:.1f} ms"
        )
