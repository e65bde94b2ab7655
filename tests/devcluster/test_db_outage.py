"""The cluster manager's database stopped for 5 s and for 60 s (ten leases) on a real virtual
cluster: two hosts, real QEMU guests, the cluster manager on a real PostgreSQL server (over its
Unix socket, from the cluster manager's namespace). No VM stops, restarts or moves; the work in
flight when it goes (a group of 4 being placed, a migration, a suspend, a VM waiting to be
placed) ends in one place once the database is back. (Ten minutes: ``bench outage
--database``.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.devcluster import processes
from tashi.devcluster.harness import Running, ha_options, running_cluster
from tashi.devcluster.qemuwatch import QemuWatch
from tests.devcluster.test_outages import (
    BOOT,
    HEARTBEAT,
    all_hosts_report,
    check_one_place,
    destroy,
    history_kinds,
    live,
    vm,
    wait_running,
    work_in_flight,
)
from tests.fixtures.dbservers import Server, serving, start_postgres

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tashi-cluster needs root")

FABRIC = "198.18.112.0/20"
OUTAGE = 60.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    yield from serving(start_postgres)  # its own: this module halts it


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, tiny_image: Path, postgres: Server
) -> Iterator[Running]:
    database = postgres.create_database().rsplit("/", 1)[1]
    options = ha_options(
        FABRIC, tiny_image, sqlUri=postgres.socket_uri(database), sqlPassword=postgres.password
    )
    with running_cluster(tmp_path_factory.mktemp("dboutage"), 2, options) as running:
        yield running


@pytest.mark.timeout(600)  # the database away for a minute, then every VM checked: 73 s seen
@pytest.mark.parametrize("outage", [5.0, OUTAGE])
def test_a_database_outage_stops_no_vm(cluster: Running, postgres: Server, outage: float) -> None:
    c = cluster
    tag = f"db{int(outage)}"
    names = [f"{tag}-a", f"{tag}-b", f"{tag}-c"]
    for name in names:
        c.admin.create_vm(vm(name))
    wait_running(c, names)
    with QemuWatch(c.layout.root) as watch:
        before = {i: [p.pid for p in ps] for i, ps in live(watch).items()}
        wall = time.time()
        # work in flight when the database goes: a group being placed, a migration, a
        # suspend, and a VM asked for that waits to be placed
        group = work_in_flight(c, tag, names)
        late = f"{tag}-late"
        c.admin.create_vm(vm(late))
        postgres.halt()
        stopped = time.monotonic()
        deadline = stopped + outage
        while time.monotonic() < deadline:  # the outage itself: nothing to wait for but time
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        postgres.restart()
        back, back_wall = time.monotonic(), time.time()
        reported = all_hosts_report(c, back_wall) - back
        processes.wait_for(
            f"{late} placed",
            lambda: c.admin.get_instance(late).state in ("Activating", "Running"),
            60.0,
            every=0.1,
        )
        placed = time.monotonic() - back
        # issue 26: every host within one heartbeat period of the return (the bound leaves
        # one more for a loaded machine), the waiting VM placed within 5 s
        assert reported < 2 * HEARTBEAT, f"the hosts reported {reported:.1f} s after the return"
        assert placed <= 5.0, f"{late} was placed {placed:.1f} s after the return"
        all_hosts_report(c, wall)
        wait_running(c, [names[0], names[1], late, *(g.name for g in group)], BOOT)
        processes.wait_for(
            f"{names[2]} suspended",
            lambda: c.admin.get_instance(names[2]).state == "Suspended",
            60.0,
            every=0.5,
        )
        busy = {c.admin.get_instance(n).id for n in names[1:]}  # migrated, suspended
        after = live(watch)
        for iid, pids in before.items():
            if iid not in busy:
                assert [p.pid for p in after.get(iid, [])] == pids, f"instance {iid} restarted"
        for name in [names[0], *(g.name for g in group)]:
            kinds = history_kinds(c, name)
            assert not {"rescheduled", "fenced", "hostLost"} & set(kinds), (name, kinds)
        check_one_place(c, watch)
    assert watch.overlaps() == []
    print(
        f"\ndatabase down {back - stopped:.1f} s: {len(before)} VMs ran on; every host reported"
        f" {reported:.2f} s and {late} was placed {placed:.1f} s after it was back"
    )
    destroy(c, tag)
