"""boto3 drives volumes and snapshots on a live virtual cluster (``ec2``: two QEMU hosts): a
volume hot-plugged into a running tiny guest is seen by it (its ``TASHI-GUEST-DISK`` console
marker, with the size) and let go when detached; it cannot be deleted while attached; it is
snapshotted while the guest runs (the node's ``blockdev-backup``) and a new volume made from the
snapshot; RunInstances' BlockDeviceMappings grow the root disk and attach volumes the guest has
at boot, each going or staying at termination as asked; and a VM migrates with a hot-plugged
volume, whose guest still lets it go on its new host."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tashi.devcluster.processes import wait_for
from tashi.images.markers import DISK, UP
from tests.ec2.conftest import REGION, Ec2Cluster
from tests.ec2.test_live_instances import TINY, WAIT, code, tiny_ami

ZONE = f"{REGION}a"
GUEST = 120.0  # seconds a tiny guest may take to boot or to notice a disk, under TCG
GIB = 2**30


def _run(client: Any, **more: Any) -> str:
    made = client.run_instances(
        ImageId=tiny_ami(client), InstanceType=TINY, MinCount=1, MaxCount=1, **more
    )
    iid = str(made["Instances"][0]["InstanceId"])
    client.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    _console_has(client, iid, UP)
    return iid


def _console(client: Any, iid: str) -> str:
    return str(client.get_console_output(InstanceId=iid).get("Output") or "")


def _console_has(client: Any, iid: str, text: str, times: int = 1) -> str:
    deadline = time.monotonic() + GUEST
    while time.monotonic() < deadline:
        out = _console(client, iid)
        if out.count(text) >= times:
            return out
        time.sleep(0.5)
    raise AssertionError(f"{iid} did not print {text!r} {times} time(s) within {GUEST} s")


def _disk_markers(out: str) -> list[tuple[str, str, str | None]]:
    """(action, name, size) of each TASHI-GUEST-DISK line."""
    found = re.findall(rf"{DISK} action=(\w+) name=(\w+)(?: size=(\d+))?", out)
    return [(a, n, s or None) for a, n, s in found]


def _volume(client: Any, size: int = 1, **more: Any) -> str:
    vid = str(client.create_volume(AvailabilityZone=ZONE, Size=size, **more)["VolumeId"])
    client.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
    return vid


def _state(client: Any, vid: str) -> str:
    return str(client.describe_volumes(VolumeIds=[vid])["Volumes"][0]["State"])


def test_a_volume_comes_to_a_running_guest_is_snapshotted_and_goes(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    iid = _run(client)
    vid = _volume(
        client,
        1,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "data"}]}],
    )

    attached = client.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    assert attached["State"] in ("attaching", "attached")
    client.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=WAIT)
    out = _console_has(client, iid, f"{DISK} action=add")
    assert ("add", "vdb", str(GIB)) in _disk_markers(out)  # the guest found a 1 GiB disk
    [shown] = client.describe_volumes(VolumeIds=[vid])["Volumes"]
    assert [(a["InstanceId"], a["Device"], a["State"]) for a in shown["Attachments"]] == [
        (iid, "/dev/sdf", "attached")
    ]
    with pytest.raises(ClientError) as refused:
        client.delete_volume(VolumeId=vid)
    assert code(refused) == "VolumeInUse"
    with pytest.raises(ClientError) as elsewhere:
        ec2.client("bob").describe_volumes(VolumeIds=[vid])
    assert code(elsewhere) == "InvalidVolume.NotFound"

    snap = client.create_snapshot(VolumeId=vid, Description="while it runs")["SnapshotId"]
    client.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=WAIT)
    [described] = client.describe_snapshots(OwnerIds=["self"], SnapshotIds=[snap])["Snapshots"]
    assert (described["VolumeId"], described["VolumeSize"], described["State"]) == (
        vid,
        1,
        "completed",
    )

    client.detach_volume(VolumeId=vid)
    client.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
    out = _console_has(client, iid, f"{DISK} action=remove")
    assert ("remove", "vdb", None) in _disk_markers(out)  # the guest let it go

    restored = str(client.create_volume(AvailabilityZone=ZONE, SnapshotId=snap, Size=2)["VolumeId"])
    client.get_waiter("volume_available").wait(VolumeIds=[restored], WaiterConfig=WAIT)
    client.attach_volume(VolumeId=restored, InstanceId=iid, Device="/dev/xvdg")
    client.get_waiter("volume_in_use").wait(VolumeIds=[restored], WaiterConfig=WAIT)
    out = _console_has(client, iid, f"{DISK} action=add", times=2)
    assert ("add", "vdb", str(2 * GIB)) in _disk_markers(out)

    client.terminate_instances(InstanceIds=[iid])  # a volume it had is left, available
    client.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    wait_for(f"{restored} to be free", lambda: _state(client, restored) == "available", 30.0, 0.5)
    for volume in (vid, restored):
        client.delete_volume(VolumeId=volume)
    client.delete_snapshot(SnapshotId=snap)
    assert client.describe_volumes(VolumeIds=[])["Volumes"] == []


def test_block_device_mappings_at_launch(ec2: Ec2Cluster) -> None:
    client = ec2.client("bob")
    iid = _run(
        client,
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 2}},
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "DeleteOnTermination": True}},
            {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 3, "DeleteOnTermination": False}},
        ],
    )
    filters = [{"Name": "attachment.instance-id", "Values": [iid]}]
    mine = client.describe_volumes(Filters=filters)["Volumes"]
    by_device = {v["Attachments"][0]["Device"]: v for v in mine}
    assert {d: v["Size"] for d, v in by_device.items()} == {
        "/dev/vda": 2,
        "/dev/sdf": 1,
        "/dev/sdg": 3,
    }
    kept = by_device["/dev/sdg"]["VolumeId"]
    gone = by_device["/dev/sdf"]["VolumeId"]
    # DescribeInstances shows the same volumes, as AWS renders an instance's block devices
    [inst] = client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"]
    assert (inst["RootDeviceName"], inst["RootDeviceType"]) == ("/dev/vda", "ebs")
    shown = {m["DeviceName"]: m["Ebs"] for m in inst["BlockDeviceMappings"]}
    assert {d: e["VolumeId"] for d, e in shown.items()} == {
        d: v["VolumeId"] for d, v in by_device.items()
    }
    assert {d: (e["Status"], e["DeleteOnTermination"]) for d, e in shown.items()} == {
        "/dev/vda": ("attached", True),
        "/dev/sdf": ("attached", True),
        "/dev/sdg": ("attached", False),
    }
    assert shown["/dev/sdf"]["AttachTime"] == by_device["/dev/sdf"]["Attachments"][0]["AttachTime"]
    # the guest booted with them: its kernel names them after its root disk
    assert "TASHI-GUEST-UP" in _console(client, iid)
    client.terminate_instances(InstanceIds=[iid])
    client.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    wait_for(f"{kept} to be free", lambda: _state(client, kept) == "available", 30.0, 0.5)
    left = {v["VolumeId"] for v in client.describe_volumes()["Volumes"]}
    assert kept in left and gone not in left
    client.delete_volume(VolumeId=kept)


def test_a_vm_migrates_with_its_volume(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    iid = _run(client)
    vid = _volume(client)
    client.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdh")
    client.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=WAIT)
    _console_has(client, iid, f"{DISK} action=add")
    admin = ec2.running.admin
    number = int(iid[2:], 16)
    source = admin.get_instance(number).hostId
    target = next(h for h in admin.get_hosts() if h.id != source)
    admin.migrate_vm(number, target.name)
    wait_for(
        f"{iid} to run on {target.name}",
        lambda: (lambda i: i.state == "Running" and i.hostId == target.id)(
            admin.get_instance(number)
        ),
        GUEST,
        0.5,
    )
    assert [d.uri for d in admin.get_instance(number).disks][-1] == f"volume:{vid}"
    client.detach_volume(VolumeId=vid)  # the guest, moved, still lets it go
    client.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
    assert ("remove", "vdb", None) in _disk_markers(
        _console_has(client, iid, f"{DISK} action=remove")
    )
    client.terminate_instances(InstanceIds=[iid])
    client.delete_volume(VolumeId=vid)
