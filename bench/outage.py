"""A long control-plane outage (issue 14.1): ``python -m bench outage [--minutes M]
[--database]`` (root; not part of ``all``; 10 minutes by default, 1 with ``--quick``).

A 3-host ``tashi-cluster`` of the run's own (fabric 198.18.160.0/20, real QEMU guests, the
default HA timings: 6 s lease, 1 s margin). Six VMs run; then a group of 20 is asked for
(``createMany``) and, while it is being placed and booted, the cluster manager is SIGKILLed
(``tashi-cluster rm cm``), kept down for M minutes, and started again (``add cm``). With
``--database`` the cluster manager runs on a real PostgreSQL server (over its Unix socket)
and that server is what stops (halted, then restarted), the cluster manager staying up. Every
QEMU process is followed by pidfd (``qemuwatch``) throughout.

What it prints: how long the cluster manager was away; the VMs that ran through it and whether
each kept its QEMU process (goal: all); instances restarted, fenced or lost (goal: 0); VMs that
ran on two hosts at once (goal: 0); where the group of 20 ended (goal: 20 Running, each in one
place); how soon every host reported after the cluster manager was back; and how long a VM asked
for after the return took to be placed, against the same on the healthy cluster before the
outage (the baseline, same run). The JSON goes to ``bench/results/<date>-outage.json``; the
exit status is 1 if a goal is missed.
"""

from __future__ import annotations

import ipaddress
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bench.cluster import BenchError, Workspace
from bench.e2eboot import save
from bench.nodecluster import tiny_image
from bench.report import source, table
from tashi.api.schemas import CreateManyIn, DiskIn, InstanceIn, NicIn
from tashi.client.sdk import TashiClient
from tashi.devcluster import fabric, processes
from tashi.devcluster.harness import Running, ha_options, running_cluster
from tashi.devcluster.qemuwatch import QemuWatch

Say = Callable[[str], None]


@dataclass(frozen=True)
class Outage:
    """What goes away and how it comes back."""

    what: str
    stop: Callable[[], None]
    start: Callable[[], None]


FABRIC = "198.18.160.0/20"  # the fault suite's are 128 and 144
IMAGE = "tashi-tiny.qcow2"
RUNNING, GROUP, SAMPLES = 6, 20, 3
BOOT = 600.0  # seconds for the group of 20 to boot on two cores


@dataclass
class OutageResult:
    outage: float
    ran_through: int
    kept_qemu: int
    restarted: list[str]
    twice: int
    group_running: int
    group_in_one_place: bool
    hosts_reported: float
    placed_after: float
    placed_before: float

    @property
    def kept(self) -> bool:
        return self.kept_qemu == self.ran_through

    @property
    def ok(self) -> bool:
        return (
            self.kept
            and not self.restarted
            and self.twice == 0
            and self.group_running == GROUP
            and self.group_in_one_place
        )


def vm(name: str) -> InstanceIn:
    return InstanceIn(name=name, memory=128, disks=[DiskIn(uri=IMAGE)], nics=[NicIn(network=1)])


def placed_in(client: TashiClient, name: str) -> float:
    """createVm → the scheduler placed it (Activating or later), in seconds."""
    began = time.monotonic()
    client.create_vm(vm(name))
    processes.wait_for(
        f"{name} placed",
        lambda: client.get_instance(name).state in ("Activating", "Running"),
        120.0,
        every=0.05,
    )
    return time.monotonic() - began


def wait_all_running(client: TashiClient, names: list[str]) -> None:
    processes.wait_for(
        "every VM Running",
        lambda: all(client.get_instance(n).state == "Running" for n in names),
        BOOT,
        every=1.0,
    )


def cm_outage(c: Running) -> Outage:
    def stop() -> None:
        if c.cli("rm", "cm").returncode != 0:
            raise BenchError("tashi-cluster rm cm failed")

    def start() -> None:
        result = c.cli("add", "cm")
        if result.returncode != 0:
            raise BenchError(f"tashi-cluster add cm failed: {result.stderr}")

    return Outage("cluster manager", stop, start)


def measure(c: Running, minutes: float, say: Say, outage: Outage) -> OutageResult:
    admin = c.admin
    names = [f"run-{i}" for i in range(RUNNING)]
    for name in names:
        admin.create_vm(vm(name))
    wait_all_running(admin, names)
    before = [placed_in(admin, f"base-{i}") for i in range(SAMPLES)]
    wait_all_running(admin, [f"base-{i}" for i in range(SAMPLES)])
    with QemuWatch(c.layout.root) as watch:
        pids = {life.instance: life.pid for life in watch.lives if life.ended is None}
        group = admin.create_many(
            CreateManyIn(
                basename="grp", count=GROUP, memory=128, disks=[DiskIn(uri=IMAGE)],
                nics=[NicIn(network=1)],
            )
        )  # fmt: skip
        wall = time.time()
        killed = time.monotonic()
        outage.stop()
        say(f"{outage.what} stopped; down for {minutes:g} min")
        while time.monotonic() - killed < minutes * 60:  # the outage: nothing to wait for
            time.sleep(1.0)
        outage.start()
        away = time.monotonic() - killed
        back = time.monotonic()
        processes.wait_for(
            "every host to report",
            lambda: all(
                h.up and h.lastHeartbeat is not None and h.lastHeartbeat.timestamp() > wall
                for h in admin.get_hosts()
            ),
            120.0,
            every=0.05,
        )
        reported = time.monotonic() - back
        after = placed_in(admin, "late")
        wait_all_running(admin, [g.name for g in group])
        lives = [life for life in watch.lives if life.ended is None]
        kept = sum(1 for iid, pid in pids.items() if any(lf.pid == pid for lf in lives))
        restarted = [i.name for i in admin.get_instances() if _moved(admin, i.name)]
        hosts = {h.id: h.name for h in admin.get_hosts()}
        one_place = all(
            [lf.host for lf in lives if lf.instance == g.id]
            == [hosts[admin.get_instance(g.id).hostId or 0]]
            for g in group
        )
        return OutageResult(
            outage=away,
            ran_through=len(pids),
            kept_qemu=kept,
            restarted=restarted,
            twice=len(watch.overlaps()),
            group_running=sum(admin.get_instance(g.id).state == "Running" for g in group),
            group_in_one_place=one_place,
            hosts_reported=reported,
            placed_after=after,
            placed_before=statistics.median(before),
        )


def _moved(admin: TashiClient, name: str) -> bool:
    kinds = {e.kind for e in admin.get_instance_history(name)}
    return bool({"rescheduled", "fenced", "hostLost"} & kinds)


def run(
    minutes: float | None, quick: bool, workspace: Workspace, say: Say, database: bool = False
) -> int:
    length = minutes if minutes is not None else 1.0 if quick else 10.0
    if fabric.overlapping_routes(ipaddress.IPv4Network(FABRIC)):
        raise BenchError(f"the root namespace routes {FABRIC} already (another run?)")
    options = ha_options(FABRIC, tiny_image(say), hostMemory=2048)
    if not database:
        with running_cluster(workspace.subdir("outage"), 3, options) as cluster:
            result = measure(cluster, length, say, cm_outage(cluster))
    else:
        from tests.fixtures.dbservers import start_postgres

        server = start_postgres()
        try:
            name = server.create_database().rsplit("/", 1)[1]
            options.update(sqlUri=server.socket_uri(name), sqlPassword=server.password)
            with running_cluster(workspace.subdir("outage"), 3, options) as cluster:
                halted = Outage("database", server.halt, server.restart)
                result = measure(cluster, length, say, halted)
        finally:
            server.stop()
    print_table(result, "database" if database else "cluster manager")
    kind = "outage-db" if database else "outage"
    path = save(kind, {"minutes": length, "database": database, "result": asdict(result)})
    print(f"measured: tashi {source()}; results: {path}")
    return 0 if result.ok else 1


def print_table(r: OutageResult, what: str) -> None:
    group_ok = r.group_running == GROUP and r.group_in_one_place
    placed = f"{r.placed_after:.2f} s / {r.placed_before:.2f} s"
    rows = [
        [f"{what} away", f"{r.outage:.1f} s", "", ""],
        ["VMs that kept their qemu", f"{r.kept_qemu} of {r.ran_through}", "all", _ok(r.kept)],
        ["instances restarted, fenced or lost", str(len(r.restarted)), "0", _ok(not r.restarted)],
        ["VMs on two hosts at once", str(r.twice), "0", _ok(r.twice == 0)],
        [
            f"group of {GROUP} asked for just before",
            f"{r.group_running} Running",
            "all",
            _ok(group_ok),
        ],
        [f"every host reported, after the {what}'s return", f"{r.hosts_reported:.2f} s", "", ""],
        [
            "a VM placed after the return / before",
            placed,
            "",
            f"{r.placed_after / r.placed_before:.2f}x",
        ],
    ]
    print(table(rows, ["outage", "measured", "goal", ""]))


def _ratio(r: OutageResult) -> str:
    return f"{r.placed_after / r.placed_before:.2f}x"


def _ok(good: bool) -> str:
    return "ok" if good else "MISSED"
