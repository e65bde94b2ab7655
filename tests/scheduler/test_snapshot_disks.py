"""Which first disks the scheduler's snapshot counts as persistent and in use: a disk an
instance writes itself, not a template whose copy it is still to get (a group launched from one
image by EC2's RunInstances names one template many times)."""

from __future__ import annotations

from tashi.api.schemas import DiskOut, InstanceOut
from tashi.scheduler.snapshot import build


def instance(iid: int, disk: DiskOut) -> InstanceOut:
    return InstanceOut(
        id=iid,
        name=f"vm-{iid}",
        userId=2,
        user="alice",
        state="Pending",
        hostId=None,
        vmId=None,
        cores=1,
        memory=128,
        cpuShare=1024,
        disks=[disk],
        nics=[],
        hints={},
        groupName="g",
        reason=None,
        createdAt=None,
        stateSince=None,
    )


def test_templates_to_copy_are_not_persistent_disks_in_use() -> None:
    template = DiskOut(uri="tashi-tiny.qcow2", persistent=True, copy=True)
    snap = build([], [instance(1, template), instance(2, template)])
    assert dict(snap.persistent_uses) == {}
    assert [r.persistent_disk for r in snap.pending] == [None, None]


def test_a_persistent_disk_two_instances_name_is_in_use() -> None:
    own = DiskOut(uri="db.qcow2", persistent=True)
    snap = build([], [instance(1, own), instance(2, own)])
    assert dict(snap.persistent_uses) == {"db.qcow2": 2}
    assert [r.persistent_disk for r in snap.pending] == ["db.qcow2", "db.qcow2"]
