"""A real cluster manager and real node managers (fake VMM and network drivers) as processes:
registration, activation, the lifecycle verbs, and a node manager killed and restarted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api.schemas import DiskIn, InstanceIn, NetworkIn
from tests.e2e.harness import Cluster, wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    vfs = tmp_path / "vfs"
    (vfs / "images").mkdir(parents=True)
    (vfs / "images" / "disk.img").write_bytes(b"\0" * 4096)
    c = Cluster.start(tmp_path, vfs, expireHostTime=3.0, reconcileGrace=1.0)
    try:
        c.admin.add_network(NetworkIn(id=1, name="default"))
        yield c
    finally:
        c.stop()


def state(c: Cluster, ref: str) -> str:
    return c.admin.get_instance(ref).state


def test_nodes_register_and_run_the_lifecycle(cluster: Cluster) -> None:
    cluster.add_node("n1")
    cluster.add_node("n2")
    assert sorted(h.name for h in cluster.admin.get_hosts()) == ["n1", "n2"]
    vm = cluster.admin.create_vm(InstanceIn(name="web", disks=[DiskIn(uri="disk.img")]))
    running = cluster.admin.activate_vm(vm.id, "n1")
    assert (running.state, running.hostId) == ("Running", cluster.admin.get_host("n1").id)
    assert cluster.admin.pause_vm("web").state == "Paused"
    assert cluster.admin.unpause_vm("web").state == "Running"
    # Fake VMs live inside one node manager's process, so a migration to another node manager
    # process fails on the source: this is the rollback path (QEMU migrations are tested in
    # tests/e2e/test_qemu_cluster.py).
    assert cluster.admin.migrate_vm("web", "n2").state == "MigrateTrans"
    wait_for("the rollback", lambda: state(cluster, "web") == "Running")
    assert cluster.admin.get_instance("web").hostId == cluster.admin.get_host("n1").id
    cluster.admin.suspend_vm("web")
    wait_for("the suspend", lambda: state(cluster, "web") == "Suspended")
    assert cluster.admin.resume_vm("web").state == "Pending"
    cluster.admin.activate_vm("web", "n1")
    wait_for("the restore", lambda: state(cluster, "web") == "Running")
    cluster.admin.shutdown_vm("web")
    wait_for("the shutdown", lambda: not cluster.admin.get_instances(name="web"))


def test_a_killed_node_is_noticed_and_its_vms_orphaned(cluster: Cluster) -> None:
    node = cluster.add_node("n1")
    vm = cluster.admin.create_vm(InstanceIn(name="db", disks=[DiskIn(uri="disk.img")]))
    cluster.admin.activate_vm(vm.id, "n1")
    node.kill()
    wait_for("host n1 to go down", lambda: not cluster.host_up("n1"), timeout=20)
    assert state(cluster, "db") == "Orphaned"


def test_the_lifecycle_through_the_tashi_command(cluster: Cluster) -> None:
    cluster.add_node("n1")
    cluster.add_node("n2")

    def tashi(*argv: str) -> str:
        done = cluster.tashi(*argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout

    tashi("createVm", "--name", "cli", "--disks", "disk.img")
    assert "Running" in tashi("activateVm", "--instance", "cli", "--host", "n1")
    assert "pausing" in tashi("pauseVm", "--instance", "cli")
    assert "unpausing" in tashi("unpauseVm", "--instance", "cli")
    assert "startVnc" in tashi("vmmSpecificCall", "--instance", "cli", "--arg", "list")
    assert "1500" in tashi("adaptCpuShare", "--share", "1500", "--instance", "cli")
    tashi("suspendVm", "--instance", "cli")
    wait_for("the suspend", lambda: state(cluster, "cli") == "Suspended")
    tashi("resumeVm", "--instance", "cli")
    tashi("activateVm", "--instance", "cli", "--host", "n2")
    wait_for("the restore", lambda: state(cluster, "cli") == "Running")
    iid = cluster.admin.get_instance("cli").id
    assert "shutting down" in tashi("shutdownVm", "--instance", "cli")
    wait_for("the shutdown", lambda: not cluster.admin.get_instances(name="cli"))
    history = tashi("getInstanceHistory", "--instance", str(iid))  # an admin reads it by id
    assert "suspended" in history
    assert "exited" in history
