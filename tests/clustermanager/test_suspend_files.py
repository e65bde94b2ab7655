"""Suspend files go once no instance can use them (``clustermanager/instances/suspends.py``):
destroying a Suspended instance, or one whose resume had not finished, and restarting elsewhere an
instance lost while it was being suspended or resumed, each left the VM's saved memory in the shared
store for ever (found by the fault-injection suite, issue 14.6). Other files stay."""

from __future__ import annotations

from pathlib import Path

from tashi.domain.models import Instance
from tashi.domain.nodes import NodeEvent
from tashi.domain.operations import DiskRequest, VmRequest
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceChanges
from tashi.storage.memory import MemoryStore
from tests.clustermanager.fakenodes import Cluster, cluster
from tests.clustermanager.test_ha import LEASE, MARGIN, ha_cluster, lose_host

S = InstanceState


def area(c: Cluster) -> Path:
    path = c.service.images.store.prefix / "suspend"
    path.mkdir(parents=True, exist_ok=True)
    return path


def running(c: Cluster, name: str) -> Instance:
    c.run(
        c.service.instances.create_vm(c.alice, VmRequest(name, disks=[DiskRequest("base.qcow2")]))
    )
    return c.run(c.service.instances.activate_vm(c.agent, name, "h1"))


def suspended(c: Cluster, name: str) -> Path:
    """``name`` suspended as a node manager would have done it; its file, written."""
    inst = c.run(c.service.instances.suspend_vm(c.alice, name))
    assert inst.state is S.Suspending
    now = c.clock.now()
    changes = InstanceChanges(clear_host=True, clear_vm=True)
    c.run(
        c.service.db.write(
            lambda tx: tx.instances.transition(
                inst.id, S.Suspending, S.Suspended, now=now, changes=changes
            )
        )
    )
    saved = area(c) / f"{inst.id}_{name}.gz"
    saved.write_bytes(b"\x1f\x8b memory")
    return saved


def test_destroying_a_suspended_instance_removes_its_file_only(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore())
    running(c, "web")
    saved = suspended(c, "web")
    other = area(c) / "99_other.gz"
    other.write_bytes(b"another instance's")
    assert c.run(c.service.instances.destroy_vm(c.alice, "web")) is None
    assert not saved.exists()
    assert other.exists()


def test_destroying_a_resumed_instance_before_its_restore_removes_its_file(
    tmp_path: Path,
) -> None:
    c = cluster(tmp_path, MemoryStore())
    running(c, "queued")
    running(c, "restoring")
    queued, restoring = suspended(c, "queued"), suspended(c, "restoring")
    assert c.run(c.service.instances.resume_vm(c.alice, "queued")).state is S.Pending
    c.run(c.service.instances.resume_vm(c.alice, "restoring"))
    assert c.run(c.service.instances.activate_vm(c.agent, "restoring", "h1")).state in (
        S.Resuming,
        S.Running,
    )
    c.run(c.service.instances.destroy_vm(c.alice, "queued"))
    c.run(c.service.instances.destroy_vm(c.alice, "restoring"))
    assert not queued.exists() and not restoring.exists()


def test_destroying_a_running_instance_leaves_the_suspend_area_alone(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore())
    inst = running(c, "web")
    kept = area(c) / f"{inst.id}_web.gz"
    kept.write_bytes(b"not ours to judge: the instance holds no suspend file")
    c.run(c.service.instances.destroy_vm(c.alice, "web"))
    assert kept.exists()


def test_an_instance_lost_while_suspending_restarts_without_its_partial_file(
    tmp_path: Path,
) -> None:
    c, inst = ha_cluster(tmp_path)
    c.run(c.service.instances.suspend_vm(c.alice, "web"))
    partial = area(c) / f"{inst.id}_web.gz.partial"
    partial.write_bytes(b"half a memory image")
    lose_host(c)
    c.clock.advance(LEASE + MARGIN)
    moved = c.run(c.service.ha.check())
    assert [i.id for i in moved] == [inst.id]
    assert c.instance(inst.id).state is S.Pending
    assert not partial.exists()


def _suspended_event(c: Cluster, inst: Instance, name: str) -> None:
    """h1's node manager reports the suspend of ``inst`` finished, into file ``name``."""
    host = c.run(c.service.db.read(lambda tx: tx.hosts.get(c.hosts[0])))
    event = NodeEvent(instance_id=inst.id, vm_id=7, kind="suspended", detail=name, at=c.clock.now())
    c.run(c.service.node_reports._apply_event(host, event))


def test_a_suspend_finished_for_an_instance_destroyed_meanwhile_leaves_no_file(
    tmp_path: Path,
) -> None:
    """A node manager restarted mid-suspend finishes it after the instance was destroyed: the
    file it reports is nobody's; a duplicate report of a kept suspend changes nothing."""
    c = cluster(tmp_path, MemoryStore())
    inst = running(c, "web")
    c.run(c.service.instances.suspend_vm(c.alice, "web"))
    c.run(c.service.instances.destroy_vm(c.alice, "web"))
    late = area(c) / f"{inst.id}_web.gz"
    late.write_bytes(b"\x1f\x8b memory")  # written by the node after the destroy
    _suspended_event(c, inst, late.name)
    assert not late.exists()

    kept_inst = running(c, "db")
    kept = suspended(c, "db")
    _suspended_event(c, kept_inst, kept.name)  # sent again after a restart
    assert kept.exists()
    _suspended_event(c, kept_inst, "../../etc/passwd")  # never outside its own files
