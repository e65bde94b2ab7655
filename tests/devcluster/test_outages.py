"""Outages on a real virtual cluster (issue 14, ADR 0010): three hosts, real QEMU guests, the
default HA timings of ``tashi-cluster`` (6 s lease, 1 s margin), every QEMU process followed by
pidfd (``qemuwatch``) so that a VM running on two hosts at once, even for a moment, is caught.

* The cluster manager killed for 5 s and for 60 s (ten leases) stops no VM, restarts or moves
  none, and the work in flight when it died (a group being placed, a migration, a suspend) ends
  in exactly one place.
* A node manager killed with SIGKILL: its watchdog stops its VMs, and only then do they start
  elsewhere, exactly once. One restarted within its lease re-attaches its VMs.
* A host cut off from everything (its link down): it stops its VMs itself, and they start
  elsewhere exactly once, never while the old copies run; a VM with a persistent disk too.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api.schemas import CreateManyIn, DiskIn, InstanceIn, InstanceOut, NicIn
from tashi.config.cluster import ClusterSettings
from tashi.devcluster import invariants, processes
from tashi.devcluster.harness import LEASE, Running, ha_options, running_cluster
from tashi.devcluster.qemuwatch import Life, QemuWatch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tashi-cluster needs root")

FABRIC = "198.18.96.0/20"  # neither the default nor the other modules'
IMAGE = "tashi-tiny.qcow2"
BOOT = 180.0  # seconds for VMs to boot on two loaded cores
HEARTBEAT = ClusterSettings().heartbeat  # tashi-cluster's registerFrequency for its hosts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path) -> Iterator[Running]:
    options = ha_options(FABRIC, tiny_image)
    with running_cluster(tmp_path_factory.mktemp("outages"), 3, options) as running:
        yield running


@pytest.fixture
def watch(cluster: Running) -> Iterator[QemuWatch]:
    with QemuWatch(cluster.layout.root) as w:
        yield w
    assert w.overlaps() == [], "a VM ran on two hosts at once"


def vm(name: str, disk: str = IMAGE, persistent: bool = False) -> InstanceIn:
    return InstanceIn(
        name=name,
        memory=128,
        disks=[DiskIn(uri=disk, persistent=persistent)],
        nics=[NicIn(network=1)],
    )


def wait_running(c: Running, names: list[str], timeout: float = BOOT) -> None:
    processes.wait_for(
        f"{names} Running",
        lambda: all(c.admin.get_instance(n).state == "Running" for n in names),
        timeout,
        every=0.5,
    )


def live(w: QemuWatch) -> dict[int, list[Life]]:
    """Live QEMU processes by instance id."""
    return invariants.live(list(w.lives))


def check_one_place(c: Running, w: QemuWatch) -> None:
    """Every instance is where the cluster manager says, with exactly one process if it runs
    and none otherwise; no process runs that no instance owns (``invariants.one_place``, as
    the fault-injection suite checks it, instances still in flight aside)."""
    hosts = {h.id: h.name for h in c.admin.get_hosts()}
    instances = c.admin.get_instances()
    assert invariants.one_place(instances, hosts, list(w.lives), settled=False) == []


def all_hosts_report(c: Running, since: float) -> float:
    """Wait until every host is up with a heartbeat after ``since`` (wall clock); the
    ``time.monotonic()`` when that was seen."""
    processes.wait_for(
        "every host to report to the restarted cluster manager",
        lambda: all(
            h.up and h.lastHeartbeat is not None and h.lastHeartbeat.timestamp() > since
            for h in c.admin.get_hosts()
        ),
        60.0,
        every=0.05,
    )
    return time.monotonic()


def crash_cm_for(c: Running, seconds: float, during: list[str] | None = None) -> float:
    """``rm cm``, keep it down ``seconds``, ``add cm``; how long it was away."""
    killed = time.monotonic()
    assert c.cli("rm", "cm").returncode == 0
    deadline = killed + seconds
    while time.monotonic() < deadline:  # the outage itself: nothing to wait for but time
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    result = c.cli("add", "cm")
    assert result.returncode == 0, result.stdout + result.stderr
    return time.monotonic() - killed


def history_kinds(c: Running, name: str) -> list[str]:
    return [e.kind for e in c.admin.get_instance_history(name)]


@pytest.mark.parametrize("outage", [5.0, 60.0])
def test_a_cluster_manager_outage_stops_no_vm(
    cluster: Running, watch: QemuWatch, outage: float
) -> None:
    c = cluster
    tag = f"o{int(outage)}"
    names = [f"{tag}-a", f"{tag}-b", f"{tag}-c"]
    for name in names:
        c.admin.create_vm(vm(name))
    wait_running(c, names)
    before = {i: [p.pid for p in procs] for i, procs in live(watch).items()}
    wall = time.time()
    # work in flight when it dies: a group being placed and booted, a migration, a suspend
    group = work_in_flight(c, tag, names)
    away = crash_cm_for(c, outage)
    back, back_wall = time.monotonic(), time.time()
    reported = all_hosts_report(c, back_wall) - back
    # issue 26: a heartbeat keeps its pace through the outage, so every host reports within
    # one heartbeat period of the return (the bound leaves one more for a loaded machine)
    assert reported < 2 * HEARTBEAT, f"the hosts reported {reported:.1f} s after the return"
    all_hosts_report(c, wall)
    wait_running(c, names[:2] + [g.name for g in group])
    processes.wait_for(
        f"{names[2]} suspended",
        lambda: c.admin.get_instance(names[2]).state == "Suspended",
        60.0,
        every=0.5,
    )
    after = live(watch)
    busy = {c.admin.get_instance(n).id for n in names[1:]}  # migrated, suspended
    for iid, pids in before.items():
        if iid in busy:
            continue
        assert [p.pid for p in after.get(iid, [])] == pids, f"instance {iid} was restarted"
    for name in [names[0]] + [g.name for g in group]:
        kinds = history_kinds(c, name)
        assert not {"rescheduled", "fenced", "hostLost"} & set(kinds), (name, kinds)
    check_one_place(c, watch)
    print(
        f"\ncluster manager away {away:.1f} s: {len(before)} VMs ran on, no restart;"
        f" every host reported {reported:.2f} s after its return"
    )
    destroy(c, tag)


def work_in_flight(c: Running, tag: str, names: list[str]) -> list[InstanceOut]:
    """Ask for a group of 4 (``tag-g-…``), migrate ``names[1]`` to another host and suspend
    ``names[2]``, without waiting for any of it; the group's members."""
    group = c.admin.create_many(
        CreateManyIn(
            basename=f"{tag}-g",
            count=4,
            memory=128,
            disks=[DiskIn(uri=IMAGE)],
            nics=[NicIn(network=1)],
        )
    )
    source = c.admin.get_instance(names[1]).hostId
    target = next(h.id for h in c.admin.get_hosts() if h.id != source)
    c.admin.migrate_vm(names[1], target)
    c.admin.suspend_vm(names[2])
    return group


def destroy(c: Running, prefix: str) -> None:
    """Destroy the instances named ``prefix-…`` and wait until they are gone."""
    names = [i.name for i in c.admin.get_instances() if i.name.startswith(f"{prefix}-")]
    for name in names:
        c.admin.destroy_vm(name)
    processes.wait_for(
        f"{prefix}-* gone",
        lambda: not any(i.name.startswith(f"{prefix}-") for i in c.admin.get_instances()),
        60.0,
        every=0.5,
    )


def test_a_killed_node_managers_vms_run_again_elsewhere_exactly_once(
    cluster: Running, watch: QemuWatch
) -> None:
    c = cluster
    names = [f"nk-{i}" for i in range(3)]
    for name in names:
        c.admin.create_vm(vm(name))
    wait_running(c, names)
    victim = c.admin.get_host(c.admin.get_instance(names[0]).hostId)  # type: ignore[arg-type]
    n = victim.name.removeprefix("host")
    on_victim = {i.id for i in c.admin.get_instances() if i.hostId == victim.id}
    killed = time.monotonic()
    assert c.cli("rm", f"nm:{n}").returncode == 0
    processes.wait_for(
        "the watchdog to stop the orphaned VMs",
        lambda: not any(p.host == victim.name for ps in live(watch).values() for p in ps),
        LEASE * 4,
        every=0.2,
    )
    fenced = time.monotonic() - killed
    processes.wait_for(
        "the victim's instances Running on other hosts",
        lambda: all(
            i.state == "Running" and i.hostId != victim.id
            for i in c.admin.get_instances()
            if i.id in on_victim
        ),
        BOOT + LEASE * 4,
        every=0.5,
    )
    for iid in on_victim:
        assert [p.host for p in live(watch)[iid]] != [victim.name]
        gap = watch.min_gap(iid)
        assert gap is not None and gap > 0, (iid, gap)
    print(f"\nnode manager killed: its VMs stopped by the watchdog after {fenced:.1f} s")
    assert c.cli("add", f"nm:{n}").returncode == 0
    processes.wait_for("the host up again", lambda: c.admin.get_host(victim.id).up, 60.0)
    check_one_place(c, watch)
    destroy(c, "nk")


def test_a_node_manager_back_within_its_lease_keeps_its_vms(
    cluster: Running, watch: QemuWatch
) -> None:
    c = cluster
    host = next(h for h in c.admin.get_hosts() if h.up and h.name != "host1")
    n = host.name.removeprefix("host")
    pids = {i: [p.pid for p in ps] for i, ps in live(watch).items()}
    assert c.cli("rm", f"nm:{n}").returncode == 0
    assert c.cli("add", f"nm:{n}").returncode == 0
    processes.wait_for("the host up again", lambda: c.admin.get_host(host.id).up, 60.0)
    assert {i: [p.pid for p in ps] for i, ps in live(watch).items()} == pids
    check_one_place(c, watch)


def test_an_isolated_host_stops_its_vms_before_they_run_elsewhere(
    cluster: Running, watch: QemuWatch
) -> None:
    c = cluster
    c.admin.copy_image(IMAGE, "iso-disk.qcow2")
    c.admin.create_vm(vm("iso-p", "iso-disk.qcow2", persistent=True))
    c.admin.create_vm(vm("iso-a"))
    wait_running(c, ["iso-p", "iso-a"])
    victim = c.admin.get_host(c.admin.get_instance("iso-p").hostId)  # type: ignore[arg-type]
    moved = {i.id for i in c.admin.get_instances() if i.hostId == victim.id}
    namespace = c.plan.namespace(victim.name.replace("host", "h"))
    subprocess.run(
        ["ip", "netns", "exec", namespace, "ip", "link", "set", "eth0", "down"], check=True
    )
    try:
        processes.wait_for(
            "its VMs to run elsewhere",
            lambda: all(
                (i := c.admin.get_instance(iid)).state == "Running" and i.hostId != victim.id
                for iid in moved
            ),
            BOOT,
            every=0.5,
        )
    finally:
        subprocess.run(
            ["ip", "netns", "exec", namespace, "ip", "link", "set", "eth0", "up"], check=True
        )
    for iid in moved:
        gap = watch.min_gap(iid)
        assert gap is not None and gap > 0, (iid, gap)
        assert len(live(watch)[iid]) == 1
    # the persistent disk: its one writer, the new copy, holds QEMU's image lock
    disk = c.layout.vfs / "images" / "iso-disk.qcow2"
    probe = subprocess.run(["qemu-img", "info", str(disk)], capture_output=True, text=True)
    assert probe.returncode != 0 and "lock" in probe.stderr, probe.stderr
    processes.wait_for("the host up again", lambda: c.admin.get_host(victim.id).up, 60.0)
    check_one_place(c, watch)
    kinds = history_kinds(c, "iso-p")
    assert kinds.count("rescheduled") == 1, kinds
    destroy(c, "iso")
