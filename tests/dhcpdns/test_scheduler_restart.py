"""IPs stay unique across scheduler restarts, end to end: a real ``tashi-cm`` (SQLite), two
fake-driver node managers, and the real ``tashi-scheduler`` with ``hook1 = DhcpDns`` (dnsmasq
backend writing its files; no dnsmasq needs to run for the files). Instances are created and
placed, the scheduler is stopped (SIGTERM, and once SIGKILL, with instances destroyed while it
is gone), started again, more are created: no address is ever handed out twice, the cluster
manager's address table holds one row per NIC, and the dnsmasq files hold each live address
exactly once (the ones of destroyed instances gone, although the killed scheduler never saw
the destroys).
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

from tashi.api.schemas import CreateManyIn, DiskIn, InstanceOut
from tests.e2e.harness import Cluster, wait_for
from tests.scheduler.live import cluster, scheduler_config, scheduler_process

RANGE = "198.19.1.10-198.19.1.250"


def config(c: Cluster, dnsmasq: Path, **dhcpdns: str) -> Path:
    options = {"ipRange1": RANGE, "dnsDomain": "tashi.test", "dnsmasqDir": dnsmasq, **dhcpdns}
    return scheduler_config(c, "agent", {"DhcpDns": options}, hook1="DhcpDns")


def scheduler(c: Cluster, path: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A ``tashi-scheduler``; the test stops it (by pid); stopped here at the latest."""
    return scheduler_process(c, path, c.root / "scheduler.log")


def create(c: Cluster, basename: str, count: int) -> None:
    c.admin.create_many(
        CreateManyIn(basename=basename, count=count, disks=[DiskIn(uri="disk.img")])
    )


def placed(c: Cluster, count: int) -> list[InstanceOut]:
    """Wait until ``count`` instances run with an address; they are returned."""

    def probe() -> list[InstanceOut] | None:
        live = c.admin.get_instances()
        done = [i for i in live if i.state == "Running" and i.nics[0].ip is not None]
        return done if len(done) == count == len(live) else None

    return wait_for(f"{count} instances running with addresses", probe, timeout=180, every=0.3)


def check_unique(c: Cluster, dnsmasq: Path, live: list[InstanceOut]) -> None:
    ips = [i.nics[0].ip for i in live]
    assert len(set(ips)) == len(ips), Counter(ips).most_common(3)
    table = sorted(a.ip for a in c.admin.get_addresses())
    assert table == sorted(ip for ip in ips if ip is not None)
    leases = (dnsmasq / "dhcp-hosts.1").read_text().splitlines()
    names = (dnsmasq / "addn-hosts.1").read_text().splitlines()
    assert sorted(line.split(",")[1] for line in leases) == table  # each address once
    assert sorted(line.split()[0] for line in names) == table
    by_mac = {i.nics[0].mac: (i.nics[0].ip, i.name) for i in live}
    for line in leases:
        mac, ip, name = line.split(",")
        assert by_mac[mac] == (ip, name)


def test_no_address_is_handed_out_twice_across_scheduler_restarts(tmp_path: Path) -> None:
    dnsmasq = tmp_path / "dnsmasq"
    with cluster(tmp_path, nodes=2) as c:
        path = config(c, dnsmasq)
        handed: dict[int, str | None] = {}  # instance -> its address, as first seen

        def remember(live: list[InstanceOut]) -> None:
            for i in live:
                assert handed.setdefault(i.id, i.nics[0].ip) == i.nics[0].ip  # never re-assigned

        with scheduler(c, path) as first:
            create(c, "a", 6)
            remember(placed(c, 6))
            first.send_signal(signal.SIGTERM)
            assert first.wait(30) == 0
        check_unique(c, dnsmasq, c.admin.get_instances())

        with scheduler(c, path) as second:
            create(c, "b", 4)
            live = placed(c, 10)
            remember(live)
            check_unique(c, dnsmasq, live)
            second.send_signal(signal.SIGKILL)
            assert second.wait(30) == -signal.SIGKILL
        # While no scheduler runs, two instances go: their addresses are free again, and the
        # files still list them (nobody told the backend).
        gone = [i for i in c.admin.get_instances() if i.name in ("a-1", "b-2")]
        assert len(gone) == 2
        for inst in gone:
            c.admin.destroy_vm(inst.id, force=True)
        wait_for("the destroyed instances to be gone", lambda: len(c.admin.get_instances()) == 8)
        stale = (dnsmasq / "dhcp-hosts.1").read_text()
        assert all(inst.nics[0].mac in stale for inst in gone)

        with scheduler(c, path):
            # start() rebuilt the files from the cluster before anything else is placed.
            create(c, "c", 4)
            live = placed(c, 12)
            remember(live)
            check_unique(c, dnsmasq, live)
            text = (dnsmasq / "dhcp-hosts.1").read_text()
            assert not [i for i in gone if i.nics[0].mac in text]
        assert len(handed) == 14  # 6 + 4 + 4 instances
        # The freed addresses went to new instances (lowest free first), never to two at once.
        freed = {g.nics[0].ip for g in gone}
        assert freed <= {i.nics[0].ip for i in live}

        # A scheduler asked for what dnsmasq cannot do does not start, and says why.
        refused = config(c, dnsmasq, reverseDns="False")
        with scheduler(c, refused) as process:
            assert process.wait(60) != 0
        log = (c.root / "scheduler.log").read_text()
        assert "reverseDns = False cannot be honoured with backend = dnsmasq" in log
