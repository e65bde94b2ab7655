"""``python -m bench scale``: one cluster manager under thousands of hollow hosts (issue 25).

For each store (SQLite, PostgreSQL) it starts a database and a real ``tashi-cm``
(``cluster.py``), and a process of hollow hosts (``hollowproc.py``, ``hollow.py``: the node
manager's own code over the fake VMM driver). Then it grows the cluster in steps. At each step
the new hosts register (``POST /v1/nodes``), their VMs are created (``createMany``) and
started by the cluster manager on them (``activateVm``: it calls ``POST /v1/vms`` on the
hollow host), and, once every host has sent a heartbeat with its VMs, one measurement window
(``scaleprobes.py``) times single-object calls and lists and a small ``activateGroup`` while the
heartbeats flow, and reads the cluster manager's CPU, memory and open files and the database's
connection starts: a third of the window has the heartbeats alone (the cluster manager's CPU
per heartbeat is read there), the rest adds the calls. The first step (0 hosts) is the baseline
of the ratios. ``scalereport.py`` prints and saves the results.

The cluster manager runs with its defaults but for the options that must follow the heartbeat
period (``expireHostTime`` and ``hostLeaseTime``, each ``LIVENESS`` periods; the defaults, 6 s
and 10 s, go with a 2 s period), written to ``etc/ClusterManager.cfg`` in its working directory
(which it reads before the benchmark's own file), and ``maxBatch`` (the fill's ``createMany``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import scalefill
from bench import scaleprobes as probes
from bench.cluster import IMAGE, BenchError, CmProcess, Database, Workspace, start_cm
from bench.cpu import process_cpu_seconds, tree_cpu_seconds
from bench.hollowproc import HollowProcess
from tashi.api.schemas import DiskIn, HostIn, InstanceIn, UserIn
from tashi.client.sdk import TashiClient

STORES = ("sqlite", "postgres")
BENCH_DATABASE = "tashi_scale"
LIVENESS = 3.0  # expireHostTime and hostLeaseTime, in heartbeat periods
VM_MEMORY = scalefill.VM_MEMORY  # MB of each hollow VM
FILL_MEMBERS = 1000  # maxBatch of the cluster manager: the largest fill group
FILL_GROUP_HOSTS = 1  # hosts of one fill group (scalefill.py)
FILL_CONCURRENCY = 8  # fill groups under way at once
CALL_TIMEOUT = 60.0  # seconds any one call of the benchmark may take
BEHIND = 0.5  # a store stops after a step whose answered heartbeats fell below this share
NODE_USER, FILL_USER = "hollow", "filler"
GROW_TIMEOUT_PER_HOST = 2.0  # seconds a registration may take before the step is given up


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure: ``steps`` (hosts after each step, 0 first), VMs per host, the
    heartbeat period, and each step's window (seconds of measurement)."""

    steps: tuple[int, ...]
    vms_per_host: int
    period: float
    window: float
    stores: tuple[str, ...]
    fill_group_hosts: int = FILL_GROUP_HOSTS
    fill_concurrency: int = FILL_CONCURRENCY


DEFAULT_STEPS = (0, 250, 500, 1000, 2000, 3000, 5000)


def plan_for(
    *,
    quick: bool,
    stores: tuple[str, ...],
    max_hosts: int | None,
    steps: tuple[int, ...] | None,
    vms_per_host: int | None,
    period: float | None,
    fill_group_hosts: int | None = None,
    fill_concurrency: int | None = None,
) -> Plan:
    """The plan the flags ask for (``--quick``: 50 hosts of 5 VMs, 4 s heartbeats)."""
    if quick:
        chosen = steps or (0, 50)
        plan = Plan(chosen, vms_per_host or 5, period or 4.0, 0.0, stores)
    else:
        top = max_hosts if max_hosts is not None else 2000
        chosen = steps or tuple(s for s in DEFAULT_STEPS if s <= top)
        plan = Plan(chosen, vms_per_host or 15, period or 10.0, 0.0, stores)
    if list(plan.steps) != sorted(set(plan.steps)) or plan.steps[0] != 0:
        raise BenchError(f"--steps must grow and start at 0: {plan.steps}")
    # Each window sees every host beat at least three times, and enough single calls.
    window = 3 * plan.period if quick else max(3 * plan.period, 30.0)
    group = fill_group_hosts or FILL_GROUP_HOSTS
    if group * plan.vms_per_host > FILL_MEMBERS or (fill_concurrency or 1) < 1:
        raise BenchError(
            f"a fill group holds at most {FILL_MEMBERS} VMs and at least one group fills"
        )
    return Plan(
        plan.steps,
        plan.vms_per_host,
        plan.period,
        window,
        plan.stores,
        group,
        fill_concurrency or FILL_CONCURRENCY,
    )


@dataclass(slots=True)
class Setup:
    """One store's running system: the cluster manager, its admin client, the hollow hosts."""

    kind: str
    cm: CmProcess
    admin: TashiClient
    hollow: HollowProcess
    db_pid: int | None
    sessions: Callable[[], int | None]  # database sessions started so far (None: SQLite)
    filler: int  # the user who owns the fill VMs
    probe_host: int  # a host registered by the admin, never up: getHost's object
    probe_instance: int  # a Pending instance of the admin: getInstance's object
    host_ids: list[int]


def run_store(
    kind: str,
    plan: Plan,
    workspace: Workspace,
    say: Callable[[str], None],
    steps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every step on one store; the per-step results, each also appended to ``steps`` as soon
    as it is measured (what a failure or Ctrl-C leaves is still reported)."""
    with contextlib.ExitStack() as stack:
        say(f"[{kind}] starting tashi-cm")
        setup = start_system(kind, plan, workspace, stack)
        say(f"[{kind}] tashi-cm pid {setup.cm.pid}, hollow hosts pid {setup.hollow.pid}")
        steps = [] if steps is None else steps
        for target in plan.steps:
            steps.append(_step(setup, plan, target, say))
            beats = steps[-1]["heartbeats"]
            if target > 0 and beats["answered_per_s"] < BEHIND * beats["offered_per_s"]:
                say(f"[{kind}] under {BEHIND:.0%} of the heartbeats answered: no larger step")
                break
        return {"store": kind, "cm_log_tail": setup.cm.log_tail(5), "steps": steps}


def start_system(kind: str, plan: Plan, workspace: Workspace, stack: contextlib.ExitStack) -> Setup:
    """A store's database, its ``tashi-cm`` and a process of hollow hosts (none registered
    yet: ``op="grow"``), each stopped by ``stack``."""
    directory = workspace.subdir(f"scale-{kind}")
    db, db_pid, sessions = _database(kind, workspace, stack)
    _cm_overrides(directory, plan)
    cm = start_cm(directory, db, max_batch=FILL_MEMBERS)
    stack.callback(cm.stop)
    admin = stack.enter_context(TashiClient(cm.base_url, token=cm.token, timeout=CALL_TIMEOUT))
    return _prepare(kind, cm, admin, directory, plan, db_pid, sessions, stack)


def _database(
    kind: str, workspace: Workspace, stack: contextlib.ExitStack
) -> tuple[Database, int | None, Callable[[], int | None]]:
    if kind == "sqlite":
        return Database(kind, uri="", password="", url=""), None, lambda: None
    from sqlalchemy import create_engine, text
    from tests.fixtures.dbservers import start_postgres

    server = start_postgres(workspace.root)
    stack.callback(server.stop)
    url = server.create_database(BENCH_DATABASE)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    stack.callback(engine.dispose)
    watcher = stack.enter_context(engine.connect())  # one session, opened once

    def sessions() -> int:
        watcher.execute(text("SELECT pg_stat_clear_snapshot()"))
        query = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        return int(watcher.execute(text(query)).scalar_one())

    db = Database(kind, server.uri(BENCH_DATABASE), server.password, url)
    return db, server.pid, sessions


def _cm_overrides(directory: Path, plan: Plan) -> None:
    etc = directory / "etc"
    etc.mkdir()
    liveness = LIVENESS * plan.period
    (etc / "ClusterManager.cfg").write_text(
        f"[ClusterManagerService]\nexpireHostTime = {liveness:g}\nhostLeaseTime = {liveness:g}\n"
    )


def _prepare(
    kind: str,
    cm: CmProcess,
    admin: TashiClient,
    directory: Path,
    plan: Plan,
    db_pid: int | None,
    sessions: Callable[[], int | None],
    stack: contextlib.ExitStack,
) -> Setup:
    password = secrets.token_urlsafe(16)
    admin.register_user(UserIn(name=NODE_USER, password=password, role="node"))
    filler = admin.register_user(UserIn(name=FILL_USER, password=secrets.token_urlsafe(16)))
    probe_host = admin.register_host(HostIn(name="probe-host")).id
    probe = admin.create_vm(InstanceIn(name="probe-base", disks=[DiskIn(uri=IMAGE)]))
    hollow = HollowProcess(directory / "hollow.log")
    stack.callback(hollow.stop)
    per_host = plan.vms_per_host + probes.GROUP  # room for the timed group's members
    hollow.order(
        60.0,
        op="start",
        cm_url=cm.base_url,
        username=NODE_USER,
        password=password,
        root=str(hollow.root / "hosts"),
        period=plan.period,
        memory=per_host * VM_MEMORY,
        cores=per_host,
    )
    return Setup(kind, cm, admin, hollow, db_pid, sessions, filler.id, probe_host, probe.id, [])


def _step(setup: Setup, plan: Plan, target: int, say: Callable[[str], None]) -> dict[str, Any]:
    kind = setup.kind
    grown = target - len(setup.host_ids)
    grow_s = fill_s = 0.0
    unstarted = 0
    if grown > 0:
        say(f"[{kind}] {target} hosts: registering {grown} more")
        answer = setup.hollow.order(60.0 + GROW_TIMEOUT_PER_HOST * grown, op="grow", count=grown)
        new = [int(host_id) for _name, host_id in answer["hosts"]]
        setup.host_ids.extend(new)
        grow_s = float(answer["seconds"])
        say(f"[{kind}] registered in {grow_s:.1f} s; starting {grown * plan.vms_per_host} VMs")
        done = scalefill.fill(
            setup.admin,
            setup.filler,
            new,
            tag=str(target),
            vms_per_host=plan.vms_per_host,
            group_hosts=plan.fill_group_hosts,
            concurrency=plan.fill_concurrency,
        )
        fill_s, unstarted = done.seconds, done.unstarted
        missing = f" ({unstarted} could not be started: {done.why})" if unstarted else ""
        say(f"[{kind}] VMs started in {fill_s:.1f} s{missing}; waiting a heartbeat period")
        setup.hollow.order(60.0, op="settle")
        time.sleep(plan.period * 1.5)  # every host's heartbeat carries its new VMs
    before = _sample(setup)
    setup.hollow.order(30.0, op="window")
    time.sleep(plan.window / 3)  # heartbeats alone: the cluster manager's CPU per heartbeat
    quiet = _sample(setup)
    alone = setup.hollow.order(60.0, op="stats")
    calls = probes.run_window(setup.admin, _targets(setup), plan.window * 2 / 3)
    beats = setup.hollow.order(60.0, op="stats")
    after = _sample(setup)
    hosts = setup.admin.get_hosts()
    down_now = sum(1 for h in hosts if h.name.startswith("hollow-") and not h.up)
    result = _figures(setup, target, (before, quiet, after), (alone, beats), calls, down_now)
    result.update(grow_s=grow_s, fill_s=fill_s, vms_not_started=unstarted)
    say(f"[{kind}] {target} hosts: {_summary(result)}")
    return result


def _targets(setup: Setup) -> probes.Targets:
    return probes.Targets(
        instance=setup.probe_instance,
        host=setup.probe_host,
        hosts=tuple(setup.host_ids),
        owner=setup.filler,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    cm_cpu: float
    db_cpu: float
    hollow_cpu: float
    sessions: int | None


def _sample(setup: Setup) -> Sample:
    db = tree_cpu_seconds(setup.db_pid) if setup.db_pid is not None else 0.0
    return Sample(
        time.monotonic(),
        process_cpu_seconds(setup.cm.pid),
        db,
        process_cpu_seconds(setup.hollow.pid),
        setup.sessions(),
    )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _figures(
    setup: Setup,
    target: int,
    samples: tuple[Sample, Sample, Sample],
    stats: tuple[dict[str, Any], dict[str, Any]],
    calls: probes.WindowResult,
    down_now: int,
) -> dict[str, Any]:
    """The step's figures: ``samples`` at the window's start, at the end of its part with
    heartbeats alone, at its end; ``stats``: the hollow hosts' at those two ends."""
    before, quiet, after = samples
    alone, beats = stats
    wall = after.at - before.at
    cm_cpu = quiet.cm_cpu - before.cm_cpu  # heartbeats alone
    answered = int(alone["answered"])
    hollow_cpu = quiet.hollow_cpu - before.hollow_cpu  # the load generator's, the same part
    offered = int(alone["offered"])
    connections = None
    if before.sessions is not None and after.sessions is not None:
        connections = max(0, after.sessions - before.sessions - 1) / wall  # less our query
    return {
        "hosts": target,
        "vms": int(beats["vms"]),
        "window_s": wall,
        "heartbeats": {
            "offered_per_s": beats["offered"] / beats["seconds"],
            "answered_per_s": beats["answered"] / beats["seconds"],
            **beats,
        },
        "calls": calls.summary(),
        "activate_group": calls.group_summary(),
        "hosts_seen_down": len(calls.down_hosts),
        "hosts_down_at_end": down_now,
        "vms_fenced": int(beats["fenced"]),
        "vms_fenced_since_start": int(beats.get("fenced_total", 0)),
        "cm": {
            "cores": (after.cm_cpu - before.cm_cpu) / wall,
            "cores_heartbeats_alone": cm_cpu / (quiet.at - before.at),
            "cpu_ms_per_heartbeat": cm_cpu / answered * 1e3 if answered else None,
            "rss_mb": _rss_mb(setup.cm.pid),
            "fds": len(os.listdir(f"/proc/{setup.cm.pid}/fd")),
        },
        "db_cores": (after.db_cpu - before.db_cpu) / wall,
        "db_connections_per_s": connections,
        "hollow_cores": (after.hollow_cpu - before.hollow_cpu) / wall,
        "hollow": {
            "cores_heartbeats_alone": hollow_cpu / (quiet.at - before.at),
            "cpu_ms_per_heartbeat": hollow_cpu / offered * 1e3 if offered else None,
        },
        "loadavg": os.getloadavg(),
    }


def _summary(r: dict[str, Any]) -> str:
    hb = r["heartbeats"]
    return (
        f"heartbeats {hb['offered_per_s']:.1f}/s offered, {hb['answered_per_s']:.1f}/s answered,"
        f" p99 {hb['latency']['p99'] * 1e3:.0f} ms, longest gap {hb['longest_gap']:.1f} s;"
        f" tashi-cm {r['cm']['cores']:.2f} cores, {r['cm']['fds']} fds;"
        f" hollow hosts {r['hollow_cores']:.2f} cores"
        f" ({_ms(r['hollow']['cpu_ms_per_heartbeat'])} ms CPU a heartbeat);"
        f" load {r['loadavg'][0]:.1f}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def options(plan: Plan) -> dict[str, Any]:
    return {"plan": asdict(plan), "liveness_periods": LIVENESS, "vm_memory": VM_MEMORY}
