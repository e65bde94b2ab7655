"""The fault-injection suite, bounded (issue 14.6): a 3-host virtual cluster with real QEMU
guests and the default HA timings (6 s lease), a churn of VMs (create, createMany, migrate,
suspend, resume, destroy) while a piece of the cluster is SIGKILLed at a random moment and
started again; after each round every invariant of ``tashi.devcluster.faultrun`` must hold (one
place and state per instance, Running ones answering a ping, no VM twice, no VM stopped
unasked outside a crashed host, nothing leaked). Five rounds, one of each fault: the cluster
manager, a node manager back within its lease, the scheduler, a dnsmasq, and a node manager
down past its lease (its host "crashes": its VMs are fenced and restarted elsewhere). The seed
is printed; ``FAULT_SEED`` replays one. A second test proves the checks are not blind. The long
run is ``python -m bench faults`` (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api.schemas import DiskIn, InstanceIn, NicIn
from tashi.devcluster import processes, reach
from tashi.devcluster.faultrun import FaultRun, Plan, keep_logs
from tashi.devcluster.faults import Kind
from tashi.devcluster.harness import LEASE, Running, ha_options, running_cluster
from tashi.devcluster.invariants import live
from tashi.devcluster.qemuwatch import Life, QemuWatch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tashi-cluster needs root")

FABRIC = "198.18.128.0/20"  # no other test module's (the benchmark's is 198.18.144.0/20)
IMAGE = "tashi-tiny.qcow2"
SCHEDULE = (
    (Kind.CM, False),
    (Kind.NM, False),
    (Kind.SCHEDULER, None),
    (Kind.DNSMASQ, None),
    (Kind.NM, True),
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path) -> Iterator[Running]:
    options = ha_options(FABRIC, tiny_image)
    with running_cluster(tmp_path_factory.mktemp("faults"), 3, options) as running:
        yield running


@pytest.mark.timeout(600)  # 100 s of churn and crashes seen on a loaded 2-core machine
def test_churn_under_crashes_keeps_every_invariant(cluster: Running) -> None:
    seed = int(os.environ["FAULT_SEED"]) if os.environ.get("FAULT_SEED") else None
    plan = Plan(rounds=len(SCHEDULE), seed=seed, lease=LEASE, schedule=SCHEDULE)
    began = time.monotonic()
    report = FaultRun(cluster, plan).run()
    print(
        f"\nseed {report.seed}: {len(report.rounds)} rounds in {time.monotonic() - began:.0f} s,"
        f" faults {dict(report.faults)}, operations {dict(report.ops)},"
        f" refused {dict(report.refused)}"
    )
    assert {r.fault.kind for r in report.rounds} == set(Kind)
    assert report.faults["nm (host crashed)"] >= 1
    assert sum(report.ops.values()) >= 3 * len(SCHEDULE)
    if report.violations:
        logs = keep_logs(cluster.layout, cluster.root / "logs")
        pytest.fail(
            f"seed {report.seed} (FAULT_SEED={report.seed} replays it), logs in {logs}"
            " (cm/tashi-cm.log, hosts/host<N>/tashi-nm.log, hosts/host<N>/state/watchdog.log):\n"
            + "\n".join(report.violations)
        )


def boot(c: Running, watch: QemuWatch, name: str) -> tuple[int, Life]:
    """``name`` created, Running, and its one qemu."""
    c.admin.create_vm(
        InstanceIn(name=name, memory=128, disks=[DiskIn(uri=IMAGE)], nics=[NicIn(network=1)])
    )
    processes.wait_for(
        f"{name} Running", lambda: c.admin.get_instance(name).state == "Running", 120.0
    )
    iid = c.admin.get_instance(name).id
    (life,) = processes.wait_for(f"{name}'s qemu", lambda: live(list(watch.lives)).get(iid), 30.0)
    return iid, life


def test_the_checks_see_what_they_are_for(cluster: Running) -> None:
    """The same checks on the same cluster catch a VM killed behind Tashi's back, one frozen
    (SIGSTOP: its process lives, its guest does not answer), a tap, an overlay directory and a
    suspend file nobody owns: the suite's silence above is no blind spot."""
    c = cluster
    run = FaultRun(c, Plan(rounds=0, settle=1.0, lease=LEASE))
    host = sorted(c.state.hosts)[0]
    netns = c.plan.host_ns(host)
    stray_tap, ghost = "tashi999.0", c.layout.vfs / "suspend" / "999_ghost.gz"
    overlay = c.layout.host(host) / "scratch" / "999"
    frozen: Life | None = None
    try:
        with QemuWatch(c.layout.root) as watch:
            killed_id, killed = boot(c, watch, "probe-killed")
            frozen_id, frozen = boot(c, watch, "probe-frozen")
            cm_ns = c.plan.cm_ns
            processes.wait_for(
                "probe-frozen to answer",
                lambda: not reach.silent(cm_ns, [c.admin.get_instance(frozen_id)]),
                60.0,
            )
            os.kill(killed.pid, signal.SIGKILL)
            os.kill(frozen.pid, signal.SIGSTOP)
            processes.wait_for("the killed one's end", lambda: killed.ended is not None, 10.0)
            subprocess.run(
                ["ip", "-n", netns, "tuntap", "add", "dev", stray_tap, "mode", "tap"], check=True
            )
            overlay.mkdir(parents=True)
            ghost.parent.mkdir(parents=True, exist_ok=True)
            ghost.write_bytes(b"nobody's")
            found = "\n".join(run.history(watch) + run.snapshot(watch))
    finally:
        run.close()
        if frozen is not None:
            os.kill(frozen.pid, signal.SIGCONT)
        subprocess.run(["ip", "-n", netns, "link", "del", stray_tap], check=False)
        if overlay.exists():
            overlay.rmdir()
        ghost.unlink(missing_ok=True)
        for inst in c.admin.get_instances():
            if inst.name.startswith("probe-"):
                c.admin.destroy_vm(inst.id)
    for text in (
        f"the qemu of instance {killed_id} on {killed.host} (pid {killed.pid}",
        f"instance probe-frozen ({frozen_id}) is Running but",
        f"host{host}: tap {stray_tap} of instance 999, which does not run there",
        f"host{host}: overlay directory of instance 999",
        "suspend file 999_ghost.gz left: its instance is gone",
    ):
        assert text in found, f"{text!r} not in:\n{found}"
