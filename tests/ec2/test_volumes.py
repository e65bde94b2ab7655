"""Volumes and snapshots through the EC2 actions, in process, on the memory and SQLite stores:
each request written by botocore's own serializer, read by ``protocol.parse``, answered by the
action and read back by botocore's parser, over a cluster manager whose node managers are
scripted (``tests/clustermanager``'s ``FakeNodes``, their volume calls recorded) and real volume
files (qemu-img).

The live cluster (boto3 over HTTP, VMs that run and guests that see their disks) is
``test_live_volumes.py``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tashi.config.ec2 import Ec2Settings, InstanceTypesSettings
from tashi.domain.ids import InstanceId, UserId
from tashi.domain.models import Principal, Role
from tashi.domain.volumes import root_volume_id
from tashi.frontends.ec2.context import Ec2Context
from tashi.frontends.ec2.ids import image_id, instance_id
from tests.api.conftest import make_settings, make_store
from tests.clustermanager.fakenodes import Cluster, cluster
from tests.clustermanager.test_volumes import Disks
from tests.ec2 import inprocess
from tests.ec2.inprocess import Refused

ZONE = "tashi-1a"
TINY = "tiny.qcow2"


@dataclass
class Env:
    c: Cluster
    ctx: Ec2Context
    loop: asyncio.AbstractEventLoop
    users: dict[str, Principal]
    disks: Disks

    def call(self, who: str, action: str, **params: Any) -> dict[str, Any]:
        return inprocess.call(self.ctx, self.users[who], self.run, action, params)

    def refused(self, who: str, action: str, **params: Any) -> str:
        with pytest.raises(Refused) as caught:
            self.call(who, action, **params)
        return caught.value.code

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def settle(self) -> None:
        self.run(self.c.service.volumes.wait())

    def volume(self, who: str = "alice", size: int = 1, **more: Any) -> str:
        made = self.call(who, "CreateVolume", AvailabilityZone=ZONE, Size=size, **more)
        self.settle()
        return str(made["VolumeId"])

    def running(self, who: str = "alice", **more: Any) -> str:
        """A RunInstances instance, placed on h1 (Running)."""
        made = self.call(
            who, "RunInstances", ImageId=image_id(TINY), MinCount=1, MaxCount=1, **more
        )
        iid = made["Instances"][0]["InstanceId"]
        number = str(int(iid[2:], 16))
        self.run(self.c.service.instances.activate_vm(self.c.agent, number, "h1"))
        self.settle()
        return str(iid)

    def described(self, who: str = "alice", **params: Any) -> dict[str, dict[str, Any]]:
        found = self.call(who, "DescribeVolumes", **params)["Volumes"]
        return {v["VolumeId"]: v for v in found}


@pytest.fixture(params=["memory", "sqlite"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(request.param, tmp_path)


def make_env(kind: str, tmp_path: Path) -> Iterator[Env]:
    """An ``Env`` on the store ``kind``, closed after its one ``yield``."""
    settings = make_settings(tmp_path / "s")
    settings.cluster_manager.state_dir.mkdir(mode=0o700)
    store = make_store(kind, settings)
    c = cluster(tmp_path, store, memory=8192, cores=8)
    images = c.service.images.store.images_dir
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(images / TINY), "64M"], check=True
    )
    disks = Disks(service=c.service)
    disks.install(c.nodes)

    def bob(tx: Any) -> Principal:
        user = tx.users.add("bob", role=Role.user, priority=0, password_hash="x", now=c.clock.now())
        return Principal(UserId(user.id), "bob", Role.user)

    users = {"alice": c.alice, "bob": asyncio.run(c.service.db.write(bob)), "root": c.admin}
    ctx = Ec2Context.build(c.service, Ec2Settings(), InstanceTypesSettings(), "localhost:8773")
    loop = asyncio.new_event_loop()
    yield Env(c, ctx, loop, users, disks)
    loop.run_until_complete(c.service.aclose())
    loop.close()
    c.service.close()


def virtual_size(path: Path) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True, text=True
    )
    return int(json.loads(out.stdout)["virtual-size"])


# --- CreateVolume, DescribeVolumes, DeleteVolume -----------------------------------------------


def test_a_volume_is_created_described_and_deleted(env: Env) -> None:
    made = env.call(
        "alice",
        "CreateVolume",
        AvailabilityZone=ZONE,
        Size=2,
        VolumeType="gp3",
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "data"}]}],
    )
    assert (made["State"], made["Size"], made["VolumeType"], made["AvailabilityZone"]) == (
        "creating",
        2,
        "gp3",
        ZONE,
    )
    assert made["VolumeId"].startswith("vol-") and len(made["VolumeId"]) == 21
    env.settle()
    [shown] = env.call("alice", "DescribeVolumes", VolumeIds=[made["VolumeId"]])["Volumes"]
    assert (shown["State"], shown["Attachments"], shown["Tags"]) == (
        "available",
        [],
        [{"Key": "Name", "Value": "data"}],
    )
    assert env.call("bob", "DescribeVolumes")["Volumes"] == []
    assert env.refused("bob", "DescribeVolumes", VolumeIds=[made["VolumeId"]]) == (
        "InvalidVolume.NotFound"
    )
    assert env.refused("bob", "DeleteVolume", VolumeId=made["VolumeId"]) == "InvalidVolume.NotFound"
    assert made["VolumeId"] in env.described("root")
    env.call("alice", "DeleteVolume", VolumeId=made["VolumeId"])
    assert env.described() == {}
    assert env.refused("alice", "DeleteVolume", VolumeId=made["VolumeId"]) == (
        "InvalidVolume.NotFound"
    )


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Size": 1}, "MissingParameter"),
        ({"AvailabilityZone": "mars-1a", "Size": 1}, "InvalidZone.NotFound"),
        ({"AvailabilityZone": ZONE}, "MissingParameter"),
        ({"AvailabilityZone": ZONE, "Size": 0}, "InvalidParameterValue"),
        ({"AvailabilityZone": ZONE, "Size": 1, "VolumeType": "floppy"}, "InvalidParameterValue"),
        ({"AvailabilityZone": ZONE, "SnapshotId": "snap-1"}, "InvalidSnapshotID.Malformed"),
        (
            {"AvailabilityZone": ZONE, "SnapshotId": "snap-0123456789abcdef0"},
            "InvalidSnapshot.NotFound",
        ),
        ({"AvailabilityZone": ZONE, "Size": 1, "Encrypted": True}, "InvalidParameterValue"),
        (
            {
                "AvailabilityZone": ZONE,
                "Size": 1,
                "TagSpecifications": [{"ResourceType": "instance", "Tags": []}],
            },
            "InvalidParameterValue",
        ),
    ],
)
def test_create_volume_refusals(env: Env, params: dict[str, Any], code: str) -> None:
    assert env.refused("alice", "CreateVolume", **params) == code


def test_describe_volumes_filters_and_pages(env: Env) -> None:
    small = [env.volume(size=1) for _ in range(4)]
    big = env.volume(
        size=3, TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "t", "Value": "x"}]}]
    )
    assert set(env.described(Filters=[{"Name": "size", "Values": ["3"]}])) == {big}
    assert set(env.described(Filters=[{"Name": "tag:t", "Values": ["x"]}])) == {big}
    assert set(env.described(Filters=[{"Name": "tag-key", "Values": ["t"]}])) == {big}
    assert set(env.described(Filters=[{"Name": "status", "Values": ["available"]}])) == {
        *small,
        big,
    }
    assert env.described(Filters=[{"Name": "availability-zone", "Values": ["other"]}]) == {}
    assert env.refused(
        "alice", "DescribeVolumes", Filters=[{"Name": "colour", "Values": ["x"]}]
    ) == ("InvalidParameterValue")
    first = env.call("alice", "DescribeVolumes", MaxResults=5)
    assert len(first["Volumes"]) == 5 and "NextToken" not in first
    pages = env.call("alice", "DescribeVolumes", MaxResults=5, Filters=[])
    assert len(pages["Volumes"]) == 5
    env.volume()
    one = env.call("alice", "DescribeVolumes", MaxResults=5)
    two = env.call("alice", "DescribeVolumes", MaxResults=5, NextToken=one["NextToken"])
    assert len(one["Volumes"]) + len(two["Volumes"]) == 6 and "NextToken" not in two
    assert (
        env.refused("alice", "DescribeVolumes", VolumeIds=["vol-zz"]) == "InvalidVolumeID.Malformed"
    )
    assert env.refused("alice", "DescribeVolumes", VolumeIds=[small[0]], MaxResults=5) == (
        "InvalidParameterCombination"
    )


# --- AttachVolume, DetachVolume -----------------------------------------------------------------


def test_attach_and_detach_on_a_running_instance(env: Env) -> None:
    iid = env.running()
    vol = env.volume()
    done = env.call("alice", "AttachVolume", VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
    assert (done["State"], done["Device"], done["InstanceId"], done["VolumeId"]) == (
        "attached",
        "/dev/sdf",
        iid,
        vol,
    )
    assert env.disks.calls[-1][0] == "attach"
    shown = env.described()[vol]
    assert shown["State"] == "in-use"
    assert [(a["InstanceId"], a["State"]) for a in shown["Attachments"]] == [(iid, "attached")]
    filtered = env.described(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])
    assert set(filtered) == {vol, root_volume_id(int(iid[2:], 16))}
    assert env.refused("alice", "DeleteVolume", VolumeId=vol) == "VolumeInUse"
    other = env.volume()
    assert env.refused(
        "alice", "AttachVolume", VolumeId=other, InstanceId=iid, Device="/dev/xvdf"
    ) == ("InvalidParameterValue")
    assert env.refused(
        "alice", "AttachVolume", VolumeId=vol, InstanceId=iid, Device="/dev/sdg"
    ) == ("VolumeInUse")
    assert env.refused(
        "alice", "AttachVolume", VolumeId=other, InstanceId=iid, Device="/dev/sda1"
    ) == ("InvalidParameterValue")
    assert env.refused(
        "bob", "AttachVolume", VolumeId=other, InstanceId=iid, Device="/dev/sdg"
    ) == ("InvalidInstanceID.NotFound")
    assert (
        env.refused("alice", "DetachVolume", VolumeId=vol, InstanceId=instance_id(999))
        == "InvalidAttachment.NotFound"
    )

    gone = env.call("alice", "DetachVolume", VolumeId=vol)
    assert (gone["State"], gone["InstanceId"], gone["Device"]) == ("detached", iid, "/dev/sdf")
    assert env.described()[vol]["State"] == "available"
    assert env.refused("alice", "DetachVolume", VolumeId=vol) == "IncorrectState"
    env.call("alice", "DeleteVolume", VolumeId=vol)


def test_volumes_attach_only_in_their_zone_and_to_ready_instances(env: Env) -> None:
    env.ctx = Ec2Context.build(
        env.c.service, Ec2Settings(zones="tashi-1a,tashi-1b"), InstanceTypesSettings(), "x"
    )
    iid = env.running()
    elsewhere = env.call("alice", "CreateVolume", AvailabilityZone="tashi-1b", Size=1)["VolumeId"]
    env.settle()
    assert (
        env.refused("alice", "AttachVolume", VolumeId=elsewhere, InstanceId=iid, Device="/dev/sdf")
        == "InvalidVolume.ZoneMismatch"
    )
    pending = env.call("alice", "RunInstances", ImageId=image_id(TINY), MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    assert (
        env.refused(
            "alice", "AttachVolume", VolumeId=env.volume(), InstanceId=pending, Device="/dev/sdf"
        )
        == "IncorrectInstanceState"
    )


def test_a_root_volume_is_shown_snapshotted_and_stays(env: Env) -> None:
    iid = env.running()
    root = root_volume_id(int(iid[2:], 16))
    shown = env.described()[root]
    assert (shown["Size"], shown["State"], shown["Attachments"][0]["Device"]) == (
        1,
        "in-use",
        "/dev/vda",
    )
    assert shown["Attachments"][0]["DeleteOnTermination"] is True
    assert env.refused("alice", "DetachVolume", VolumeId=root) == "OperationNotPermitted"
    assert env.refused("alice", "DeleteVolume", VolumeId=root) == "VolumeInUse"
    assert env.refused("bob", "DeleteVolume", VolumeId=root) == "InvalidVolume.NotFound"
    snap = env.call("alice", "CreateSnapshot", VolumeId=root, Description="root")
    env.settle()
    assert env.disks.calls[-1][0] == "backup"  # it runs: its node copies it
    [done] = env.call("alice", "DescribeSnapshots", SnapshotIds=[snap["SnapshotId"]])["Snapshots"]
    assert (done["State"], done["VolumeId"], done["Progress"]) == ("completed", root, "100%")


# --- snapshots ----------------------------------------------------------------------------------


def test_snapshots_are_made_described_restored_and_deleted(env: Env) -> None:
    vol = env.volume(size=2)
    made = env.call(
        "alice",
        "CreateSnapshot",
        VolumeId=vol,
        Description="before the upgrade",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "v"}]}],
    )
    assert (made["State"], made["VolumeSize"], made["Description"]) == (
        "pending",
        2,
        "before the upgrade",
    )
    assert env.refused("alice", "DeleteSnapshot", SnapshotId=made["SnapshotId"]) == "IncorrectState"
    env.settle()
    mine = env.call("alice", "DescribeSnapshots", OwnerIds=["self"])["Snapshots"]
    assert [(s["SnapshotId"], s["State"], s["Tags"]) for s in mine] == [
        (made["SnapshotId"], "completed", [{"Key": "k", "Value": "v"}])
    ]
    assert env.call("bob", "DescribeSnapshots", OwnerIds=["self"])["Snapshots"] == []
    assert env.refused("bob", "DescribeSnapshots", SnapshotIds=[made["SnapshotId"]]) == (
        "InvalidSnapshot.NotFound"
    )
    by_volume = [
        {"Name": "volume-id", "Values": [vol]},
        {"Name": "status", "Values": ["completed"]},
    ]
    assert len(env.call("alice", "DescribeSnapshots", Filters=by_volume)["Snapshots"]) == 1
    assert env.call("alice", "DescribeSnapshots", OwnerIds=["000000000099"])["Snapshots"] == []
    copy = env.call("alice", "CreateVolume", AvailabilityZone=ZONE, SnapshotId=made["SnapshotId"])
    env.settle()
    assert (env.described()[copy["VolumeId"]]["Size"], copy["SnapshotId"]) == (
        2,
        made["SnapshotId"],
    )
    assert (
        env.refused(
            "alice", "CreateVolume", AvailabilityZone=ZONE, SnapshotId=made["SnapshotId"], Size=1
        )
        == "InvalidParameterValue"
    )
    env.call("alice", "DeleteSnapshot", SnapshotId=made["SnapshotId"])
    assert env.call("alice", "DescribeSnapshots")["Snapshots"] == []
    assert env.refused("alice", "DeleteSnapshot", SnapshotId=made["SnapshotId"]) == (
        "InvalidSnapshot.NotFound"
    )
    assert env.refused("alice", "CreateSnapshot", VolumeId="vol-0123456789abcdef0") == (
        "InvalidVolume.NotFound"
    )


# --- RunInstances' BlockDeviceMappings ----------------------------------------------------------


def test_block_device_mappings_grow_the_root_and_attach_volumes(env: Env) -> None:
    made = env.call(
        "alice",
        "RunInstances",
        ImageId=image_id(TINY),
        MinCount=2,
        MaxCount=2,
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 3}},
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "VolumeType": "gp3"}},
            {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 2, "DeleteOnTermination": False}},
        ],
    )
    iids = [i["InstanceId"] for i in made["Instances"]]
    shown = env.described()
    for iid in iids:
        number = InstanceId(int(iid[2:], 16))
        inst = env.run(env.c.service.instances.get(env.c.admin, str(number)))
        root, *volumes = inst.disks
        path = env.c.service.images.store.path_of(root.uri)
        assert virtual_size(path) == 3 * 2**30
        assert [d.device for d in volumes] == ["/dev/sdf", "/dev/sdg"]
        mine = {
            v["Attachments"][0]["Device"]: v
            for v in shown.values()
            if v["Attachments"] and v["Attachments"][0]["InstanceId"] == iid
        }
        assert mine["/dev/vda"]["Size"] == 3
        assert (mine["/dev/sdf"]["Size"], mine["/dev/sdf"]["VolumeType"]) == (1, "gp3")
        assert mine["/dev/sdf"]["Attachments"][0]["DeleteOnTermination"] is True
        assert mine["/dev/sdg"]["Attachments"][0]["DeleteOnTermination"] is False
    env.call("alice", "TerminateInstances", InstanceIds=iids)
    env.settle()
    left = env.described()
    assert sorted((v["Size"], v["State"]) for v in left.values()) == [
        (2, "available"),
        (2, "available"),
    ]


@pytest.mark.parametrize(
    ("mappings", "code"),
    [
        ([{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 0}}], "InvalidParameterValue"),
        ([{"DeviceName": "/dev/sdf", "Ebs": {}}], "InvalidBlockDeviceMapping"),
        ([{"DeviceName": "/dev/sdf", "VirtualName": "ephemeral0"}], "InvalidBlockDeviceMapping"),
        ([{"DeviceName": "/dev/hdq", "Ebs": {"VolumeSize": 1}}], "InvalidParameterValue"),
        (
            [
                {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}},
                {"DeviceName": "/dev/xvdf", "Ebs": {"VolumeSize": 1}},
            ],
            "InvalidBlockDeviceMapping",
        ),
        (
            [{"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": False}}],
            "InvalidBlockDeviceMapping",
        ),
    ],
)
def test_bad_block_device_mappings_make_nothing(
    env: Env, mappings: list[dict[str, Any]], code: str
) -> None:
    params = {"ImageId": image_id(TINY), "MinCount": 1, "MaxCount": 1}
    assert env.refused("alice", "RunInstances", BlockDeviceMappings=mappings, **params) == code
    assert env.described() == {}
    assert env.call("alice", "DescribeInstances")["Reservations"] == []


def test_create_tags_tags_volumes_and_snapshots(env: Env) -> None:
    vol = env.volume()
    snap = env.call("alice", "CreateSnapshot", VolumeId=vol)["SnapshotId"]
    env.settle()
    env.call("alice", "CreateTags", Resources=[vol, snap], Tags=[{"Key": "team", "Value": "db"}])
    assert env.described()[vol]["Tags"] == [{"Key": "team", "Value": "db"}]
    [shown] = env.call("alice", "DescribeSnapshots")["Snapshots"]
    assert shown["Tags"] == [{"Key": "team", "Value": "db"}]
    found = env.call(
        "alice", "DescribeTags", Filters=[{"Name": "resource-type", "Values": ["volume"]}]
    )
    assert [(t["ResourceId"], t["Key"]) for t in found["Tags"]] == [(vol, "team")]
    assert env.refused("bob", "CreateTags", Resources=[vol], Tags=[{"Key": "k", "Value": "v"}]) == (
        "InvalidVolume.NotFound"
    )
    assert env.refused("bob", "DeleteTags", Resources=[snap]) == "InvalidSnapshot.NotFound"
    assert env.call("bob", "DescribeTags")["Tags"] == []
    env.call("alice", "DeleteTags", Resources=[vol], Tags=[{"Key": "team"}])
    assert env.described()[vol]["Tags"] == []
