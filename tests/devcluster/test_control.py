"""``tashi-cluster rm``/``add`` of the control plane, for real: a one-host cluster whose cluster
manager, scheduler, node manager and dnsmasq are each crashed (SIGKILL by pid) and started
again, as a user would with the command. Each piece must be gone after ``rm`` (``status`` says
so), come back with the same command line after ``add``, and with all its state: the cluster
manager's users, networks and host, the node manager's running VM (the same qemu process), the
dnsmasq's leases. ``stop`` then leaves nothing, restarted pieces and watchdog included.

``hostLeaseTime`` is long here (60 s): the node manager must not fence its VM while the cluster
manager is away; what a crash does to the VMs within the lease is the HA tests' subject.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api.schemas import DiskIn, InstanceIn, NicIn
from tashi.devcluster import fabric, processes, strays
from tashi.devcluster.harness import Running, running_cluster
from tashi.devcluster.state import Proc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tashi-cluster needs root")

FABRIC = "198.18.64.0/20"  # neither the default nor test_cluster's
BOOT_TIMEOUT = 120.0
IMAGE = "tashi-tiny.qcow2"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path) -> Iterator[Running]:
    options: dict[str, object] = {
        "fabric": FABRIC,
        "image": tiny_image,
        "hostMemory": 512,
        "networks": "1",
        "expireHostTime": 5.0,
        "hostLeaseTime": 60.0,
        "heartbeat": 0.5,
    }
    with running_cluster(tmp_path_factory.mktemp("control"), 1, options) as running:
        yield running


def _status(c: Running) -> dict[str, list[str]]:
    """``tashi-cluster status`` as rows by their first word (piece or host name)."""
    result = c.cli("status")
    assert result.returncode == 0, result.stdout + result.stderr
    return {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _crash_and_restart(c: Running, piece: str, proc: Proc) -> Proc:
    """``rm <piece>``, checks it is gone and shown down; ``add <piece>``, checks it runs again
    with the same command line; the new record."""
    command = _cmdline(proc.pid)
    result = c.cli("rm", piece)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not processes.alive(proc.pid, proc.started), f"{piece} survived rm"
    rows = _status(c)
    assert rows[piece][1:] == [str(proc.pid), "down", "(rm)"], rows[piece]
    result = c.cli("add", piece)
    assert result.returncode == 0, result.stdout + result.stderr
    record = c.state.daemons.get(_key(piece)) or c.state.hosts[int(piece.partition(":")[2])]
    assert record.pid != proc.pid and processes.alive(record.pid, record.started)
    assert not record.crashed
    assert _cmdline(record.pid) == command
    assert _status(c)[piece][1:] == [str(record.pid), "running"]
    return record


def _key(piece: str) -> str:
    return {"cm": "tashi-cm", "scheduler": "tashi-scheduler"}.get(piece, piece.replace(":", "."))


def test_the_cluster_manager_comes_back_with_its_state(cluster: Running) -> None:
    before = cluster.state.daemons["tashi-cm"]
    users = sorted(u.name for u in cluster.admin.get_users())
    networks = sorted(n.name for n in cluster.admin.get_networks())
    rows = {"cm": ["cm", str(before.pid), "running"]}
    assert _status(cluster)["cm"] == rows["cm"]
    command = _cmdline(before.pid)
    assert cluster.cli("rm", "cm").returncode == 0
    assert not processes.alive(before.pid, before.started)
    result = cluster.cli("status")
    assert f"cm           {before.pid:<8} down (rm)" in result.stdout, result.stdout
    assert "the cluster manager does not answer" in result.stdout
    assert "`tashi-cluster add cm` starts them again" in result.stdout

    result = cluster.cli("add", "cm")
    assert result.returncode == 0, result.stdout + result.stderr
    after = cluster.state.daemons["tashi-cm"]
    assert after.pid != before.pid and processes.alive(after.pid, after.started)
    assert _cmdline(after.pid) == command
    assert sorted(u.name for u in cluster.admin.get_users()) == users
    assert {"admin", "node", "scheduler"} <= set(users)
    assert sorted(n.name for n in cluster.admin.get_networks()) == networks
    processes.wait_for(
        "host1 up again in the restarted cluster manager",
        lambda: [h.name for h in cluster.admin.get_hosts() if h.up] == ["host1"],
        30.0,
    )


def test_the_scheduler_comes_back_and_places_a_vm(cluster: Running) -> None:
    _crash_and_restart(cluster, "scheduler", cluster.state.daemons["tashi-scheduler"])
    request = InstanceIn(name="one", memory=128, disks=[DiskIn(uri=IMAGE)], nics=[NicIn(network=1)])
    inst = cluster.admin.create_vm(request)
    processes.wait_for(
        "the restarted scheduler to place one and its node manager to run it",
        lambda: cluster.admin.get_instance(inst.id).state == "Running",
        BOOT_TIMEOUT,
        every=0.5,
    )


def test_a_crashed_node_manager_leaves_its_vm_running_and_finds_it_again(
    cluster: Running,
) -> None:
    inst = cluster.admin.get_instance("one")
    qemus = _qemus(cluster)
    assert len(qemus) == 1, qemus
    _crash_and_restart(cluster, "nm:1", cluster.state.hosts[1])
    assert _qemus(cluster) == qemus, "the VM's qemu did not survive its node manager's crash"
    processes.wait_for(
        "host1 up again with one Running",
        lambda: (
            cluster.admin.get_host("host1").up
            and cluster.admin.get_instance(inst.id).state == "Running"
        ),
        30.0,
    )
    assert _qemus(cluster) == qemus


def test_dnsmasq_comes_back_with_its_leases(cluster: Running) -> None:
    leases = cluster.layout.root / "dnsmasq" / "leases.1"
    processes.wait_for("one's DHCP lease", lambda: leases.exists() and leases.read_text(), 60.0)
    kept = leases.read_text()
    record = _crash_and_restart(cluster, "dnsmasq:1", cluster.state.daemons["dnsmasq.1"])
    assert leases.read_text() == kept
    pid_file = cluster.layout.root / "dnsmasq" / "dnsmasq.1.pid"
    assert pid_file.read_text().strip() == str(record.pid)


def test_stop_leaves_nothing_of_the_restarted_pieces(cluster: Running) -> None:
    state = cluster.state
    pids = [*state.daemons.values(), *state.hosts.values()]
    qemus = _qemus(cluster)
    watchdog_file = cluster.layout.nm_state(1) / strays.WATCHDOG_PID_FILE
    watchdog = int(watchdog_file.read_text()) if watchdog_file.exists() else None
    result = cluster.cli("stop", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [p.pid for p in pids if processes.alive(p.pid, p.started)]
    assert not [pid for pid in qemus if processes.alive(pid)]
    assert watchdog is None or not processes.alive(watchdog)
    assert not [n for n in fabric.namespaces() if n.startswith(f"tashi-{state.tag}-")]
    assert not Path(state.cgroup).exists()
    assert not cluster.layout.root.exists()
    assert strays.boot_slots_left() == []


def _qemus(c: Running) -> list[int]:
    netns = c.plan.host_ns(1)
    return sorted(
        pid for pid in fabric.processes_in(netns) if b"qemu-system" in _cmdline_or_empty(pid)
    )


def _cmdline_or_empty(pid: int) -> bytes:
    try:
        return _cmdline(pid)
    except OSError:
        return b""
