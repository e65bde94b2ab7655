"""Two real schedulers race on 400 createVm against 20 fake hosts: the cluster manager's claims
keep every host within its capacity, and no instance is placed twice. (Each scheduler places up
to 16 at once from the same snapshot, so every round of both collides on the same hosts: the
race does not need more hosts; 50 node managers took minutes to start on a busy machine.)"""

from __future__ import annotations

import re
from pathlib import Path

from tashi.api.schemas import DiskIn, InstanceIn
from tests.e2e.harness import wait_for
from tests.scheduler import live

HOSTS, VMS = 20, 400
RATE = 2.4  # cores over-commit: 8 cores x 2.4 = 19 one-core VMs per host, 380 in all
PER_HOST = 19


def test_two_schedulers_never_over_commit_nor_place_twice(tmp_path: Path) -> None:
    with live.cluster(tmp_path, nodes=HOSTS, cpuCoresOverRate=RATE) as c:
        # Each scheduler plans with the same rate; the two start from the same snapshot and
        # pick the same hosts, which is the race the claims must settle.
        with (
            live.scheduler(c, "s1", cpuCoresOverRate=RATE, concurrency=16),
            live.scheduler(c, "s2", cpuCoresOverRate=RATE, concurrency=16),
        ):
            for i in range(VMS):
                c.admin.create_vm(
                    InstanceIn(name=f"r{i}", memory=128, disks=[DiskIn(uri="disk.img")])
                )

            def settled() -> bool:
                states = [i.state for i in c.admin.get_instances()]
                return (
                    states.count("Running") == HOSTS * PER_HOST
                    and states.count("Held") == VMS - HOSTS * PER_HOST
                )

            wait_for(
                f"{HOSTS * PER_HOST} Running and {VMS - HOSTS * PER_HOST} Held",
                settled,
                timeout=600,
                every=1.0,
            )
        instances = c.admin.get_instances()
        hosts = c.admin.get_hosts()
        by_host: dict[int, int] = {}
        for inst in instances:
            if inst.state == "Running":
                assert inst.hostId is not None
                by_host[inst.hostId] = by_host.get(inst.hostId, 0) + 1
        assert max(by_host.values()) <= PER_HOST
        for h in hosts:
            assert h.usedCores <= h.cores * RATE, h
            assert h.instances == by_host.get(h.id, 0)
        assert all("no host has" in (i.reason or "") for i in instances if i.state == "Held")
        # Every successful activation was counted by the one scheduler that made it.
        placed = 0
        for name in ("s1", "s2"):
            text = (tmp_path / f"{name}.log").read_text()
            assert "Traceback" not in text
            placed += sum(int(n) for n in re.findall(r"round: placed (\d+)", text))
        assert placed == HOSTS * PER_HOST
