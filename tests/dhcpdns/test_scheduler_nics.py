"""A NIC hot-plugged through OCCI into a running instance gets its address and static lease from
the real ``tashi-scheduler`` (``hook1 = DhcpDns``, dnsmasq backend writing its files; no dnsmasq
needs to run for the files), end to end: the NIC service's write bumps the change feed, the
scheduler's next round calls ``nics_changed``, the cluster manager allocates the address, the
dnsmasq hosts files get the new MAC, and the OCCI link shows ``occi.networkinterface.address``.
Removing the link takes the lease and name away. The server side only: the tiny guest runs no
DHCP client on a NIC that comes later.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tashi.api.schemas import DiskIn, InstanceIn, InstanceOut
from tashi.runtime.ports import free_port
from tests.e2e.harness import Cluster, admin_login, wait_for
from tests.scheduler.live import cluster, scheduler_config, scheduler_process

RANGE = "198.19.1.10-198.19.1.250"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"


def with_occi(c: Cluster) -> httpx.Client:
    """The cluster manager restarted with its OCCI listener on a port of its own (the default
    one may be another's); an OCCI client of it as the admin."""
    port = free_port()
    c.cm.stop()
    with c.cm.config.open("a") as cfg:
        cfg.write(f"\n[OCCI]\nport = {port}\n")
    c.cm.start()
    login = admin_login(c.root)
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        auth=(login["username"], login["password"]),
        headers={"Accept": "application/json"},
        timeout=30.0,
    )


def leases(dnsmasq: Path) -> dict[str, tuple[str, str]]:
    """``dhcp-hosts.1`` as MAC -> (IP, host name)."""
    path = dnsmasq / "dhcp-hosts.1"
    lines = path.read_text().splitlines() if path.exists() else []
    return {mac: (ip, name) for mac, ip, name in (line.split(",") for line in lines)}


def running(c: Cluster, iid: int) -> InstanceOut:
    def probe() -> InstanceOut | None:
        inst = c.admin.get_instance(iid)
        return inst if inst.state == "Running" and inst.nics[0].ip else None

    return wait_for(f"instance {iid} running with an address", probe, timeout=120, every=0.2)


def test_a_hot_plugged_nic_gets_its_lease_from_the_scheduler(tmp_path: Path) -> None:
    dnsmasq = tmp_path / "dnsmasq"
    with cluster(tmp_path, nodes=1) as c:
        occi = with_occi(c)
        options = {"ipRange1": RANGE, "dnsDomain": "tashi.test", "dnsmasqDir": dnsmasq}
        # A long watchTimeout: the scheduler wakes for the NIC because the change feed says so.
        sections = {"DhcpDns": options}
        config = scheduler_config(c, "agent", sections, hook1="DhcpDns", watchTimeout=60)
        with occi, scheduler_process(c, config, c.root / "scheduler.log"):
            vm = c.admin.create_vm(InstanceIn(name="web", disks=[DiskIn(uri="disk.img")]))
            first = running(c, vm.id).nics[0]
            assert leases(dnsmasq) == {first.mac: (first.ip, "web")}

            body = "\n".join(
                [
                    f'Category: networkinterface; scheme="{INFRA}"; class="kind"',
                    f'X-OCCI-Attribute: occi.core.source="/compute/{vm.id}"',
                    'X-OCCI-Attribute: occi.core.target="/network/1"',
                ]
            )
            made = occi.post(
                "/link/networkinterface/", content=body, headers={"Content-Type": "text/plain"}
            )
            assert made.status_code == 201, made.text
            link = str(made.headers["location"])
            mac = c.admin.get_instance(vm.id).nics[1].mac

            started = time.monotonic()
            got = wait_for(
                "the new NIC's lease", lambda: leases(dnsmasq).get(mac), timeout=20, every=0.1
            )
            print(f"lease of the hot-plugged NIC after {time.monotonic() - started:.2f} s")
            second = c.admin.get_instance(vm.id).nics[1]
            assert got == (second.ip, "web-nic1") and second.ip not in (None, first.ip)
            names = (dnsmasq / "addn-hosts.1").read_text()
            assert f"{second.ip} web-nic1.tashi.test web-nic1" in names
            shown = occi.get(link).json()["attributes"]
            assert shown["occi.networkinterface.address"] == second.ip

            gone = occi.delete(link)
            assert gone.status_code == 200, gone.text
            wait_for("the lease gone", lambda: mac not in leases(dnsmasq), timeout=30, every=0.1)
            assert leases(dnsmasq) == {first.mac: (first.ip, "web")}
            assert [a.ip for a in c.admin.get_addresses()] == [first.ip]
            c.admin.destroy_vm(vm.id, force=True)
