"""HA (ADR 0010) with a real cluster manager and two real node managers (fake VMM): a node
manager killed with SIGKILL has its instances back in Pending once its lease and the margin are
over, never before; a frozen node manager that comes back after its VM was restarted elsewhere
stops its copy."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api.schemas import DiskIn, InstanceIn, NetworkIn
from tests.e2e.harness import Cluster, wait_for

EXPIRE, LEASE, MARGIN, BEAT = 2.0, 4.0, 1.0, 0.5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    vfs = tmp_path / "vfs"
    (vfs / "images").mkdir(parents=True)
    (vfs / "images" / "disk.img").write_bytes(b"\0" * 4096)
    c = Cluster.start(
        tmp_path,
        vfs,
        expireHostTime=EXPIRE,
        hostLeaseTime=LEASE,
        restartMargin=MARGIN,
        reconcileGrace=1.0,
    )
    try:
        c.admin.add_network(NetworkIn(id=1, name="default"))
        c.add_node("n1", frequency=BEAT)
        c.add_node("n2", frequency=BEAT)
        c.wait_witnessed("n1", "n2")
        yield c
    finally:
        c.stop()


def start_on(c: Cluster, name: str, host: str) -> None:
    vm = c.admin.create_vm(InstanceIn(name=name, disks=[DiskIn(uri="disk.img")]))
    assert c.admin.activate_vm(vm.id, host).state == "Running"


def test_a_killed_node_managers_instances_return_to_pending_after_its_lease(
    cluster: Cluster,
) -> None:
    start_on(cluster, "web", "n1")
    start_on(cluster, "db", "n1")
    killed = time.monotonic()
    cluster.nodes["n1"].kill()
    wait_for("n1 to go down", lambda: not cluster.host_up("n1"), timeout=30)
    assert cluster.admin.get_instance("web").state == "Orphaned"
    wait_for(
        "web and db back in Pending",
        lambda: {i.state for i in cluster.admin.get_instances()} == {"Pending"},
        timeout=60,
    )
    elapsed = time.monotonic() - killed
    # the last lease was granted at most one heartbeat before the kill
    assert elapsed >= LEASE + MARGIN - BEAT, elapsed
    print(f"\nkill -> Pending: {elapsed:.1f} s (lease {LEASE} + margin {MARGIN})")
    web = cluster.admin.get_instance("web")
    assert web.hostId is None and "lease ran out" in (web.reason or "")
    kinds = [e.kind for e in cluster.admin.get_instance_history("web")]
    assert kinds[-2:] == ["hostLost", "rescheduled"]
    assert cluster.admin.activate_vm("web", "n2").state == "Running"


def test_a_frozen_node_that_returns_stops_the_copy_that_was_restarted(cluster: Cluster) -> None:
    start_on(cluster, "web", "n1")
    n1 = cluster.nodes["n1"]
    n1.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        wait_for(
            "web back in Pending",
            lambda: cluster.admin.get_instance("web").state == "Pending",
            timeout=60,
        )
        assert cluster.admin.activate_vm("web", "n2").state == "Running"
    finally:
        n1.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    wait_for("n1 up again", lambda: cluster.host_up("n1"), timeout=30)
    wait_for(
        "n1 to stop its copy of web",
        lambda: (
            "self-fence" in n1.log.read_text(errors="replace")
            or any(e.kind == "fenced" for e in cluster.admin.get_instance_history("web"))
        ),
        timeout=30,
    )
    web = cluster.admin.get_instance("web")
    assert (web.state, web.hostId) == ("Running", cluster.admin.get_host("n2").id)
