"""DescribeInstances and RunInstances' ClientToken through the EC2 actions, in process, on the
memory and SQLite stores (``test_volumes.Env``: botocore writes each request and reads each
answer): block device mappings as AWS renders them, filters and pages chosen on the records,
the written instances and reservations kept between calls (``instancecache``) only while
nothing they are made of changed, and a retry found by its reservation.

The live cluster's view is ``test_live_instances.py`` and ``test_live_volumes.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tashi.domain.ids import InstanceId
from tashi.domain.operations import DiskRequest, InstanceQuery, VmRequest
from tashi.domain.volumes import root_volume_id
from tashi.frontends.ec2 import protocol
from tashi.frontends.ec2.ids import image_id, instance_id
from tashi.frontends.ec2.instancecache import InstanceCache
from tashi.frontends.ec2.instanceviews import Shown, shown
from tests.ec2.test_volumes import TINY, Env, make_env


@pytest.fixture(params=["memory", "sqlite"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(request.param, tmp_path)


def _instances(env: Env, who: str = "alice", **params: Any) -> dict[str, dict[str, Any]]:
    found = env.call(who, "DescribeInstances", **params)["Reservations"]
    return {i["InstanceId"]: i for r in found for i in r["Instances"]}


def _launch(env: Env, count: int = 1, **more: Any) -> list[str]:
    made = env.call(
        "alice", "RunInstances", ImageId=image_id(TINY), MinCount=count, MaxCount=count, **more
    )
    return [i["InstanceId"] for i in made["Instances"]]


def _number(iid: str) -> InstanceId:
    return InstanceId(int(iid[2:], 16))


# --- BlockDeviceMappings, RootDeviceName, RootDeviceType ---------------------------------------


def test_block_device_mappings_show_the_root_and_the_attached_volumes(env: Env) -> None:
    [iid] = _launch(
        env,
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}},
            {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 1, "DeleteOnTermination": False}},
        ],
    )
    env.settle()
    inst = _instances(env)[iid]
    assert (inst["RootDeviceName"], inst["RootDeviceType"]) == ("/dev/vda", "ebs")
    volumes = {
        v["Attachments"][0]["Device"]: v
        for v in env.described().values()
        if v["Attachments"] and v["Attachments"][0]["InstanceId"] == iid
    }
    mappings = {m["DeviceName"]: m["Ebs"] for m in inst["BlockDeviceMappings"]}
    assert list(mappings) == ["/dev/vda", "/dev/sdf", "/dev/sdg"]
    assert mappings["/dev/vda"]["VolumeId"] == root_volume_id(_number(iid))
    for device, ebs in mappings.items():
        point = volumes[device]["Attachments"][0]
        assert ebs["VolumeId"] == volumes[device]["VolumeId"]
        assert (ebs["Status"], ebs["DeleteOnTermination"]) == ("attached", device != "/dev/sdg")
        assert isinstance(ebs["AttachTime"], datetime)
        assert ebs["AttachTime"] == point["AttachTime"]


def test_attaching_and_detaching_changes_what_is_described(env: Env) -> None:
    iid = env.running()
    before = _instances(env)[iid]["BlockDeviceMappings"]
    assert [m["DeviceName"] for m in before] == ["/dev/vda"]
    vol = env.volume()
    env.call("alice", "AttachVolume", VolumeId=vol, InstanceId=iid, Device="/dev/sdh")
    [root, added] = _instances(env)[iid]["BlockDeviceMappings"]
    assert (added["DeviceName"], added["Ebs"]["VolumeId"], added["Ebs"]["Status"]) == (
        "/dev/sdh",
        vol,
        "attached",
    )
    assert added["Ebs"]["DeleteOnTermination"] is False
    env.call("alice", "DetachVolume", VolumeId=vol)
    assert _instances(env)[iid]["BlockDeviceMappings"] == [root]


def test_an_instance_store_root_and_a_terminated_instance_have_no_volumes(env: Env) -> None:
    request = VmRequest(name="plain", disks=[DiskRequest(uri=TINY)], cores=1, memory=128)
    plain = env.run(env.c.service.instances.create_vm(env.users["alice"], request))
    [iid] = _launch(env)
    shown_now = _instances(env)
    made = shown_now[instance_id(plain.id)]
    assert (made["RootDeviceType"], made["BlockDeviceMappings"]) == ("instance-store", [])
    env.call("alice", "TerminateInstances", InstanceIds=[iid])
    gone = _instances(env, InstanceIds=[iid])[iid]
    assert (gone["State"]["Name"], gone["BlockDeviceMappings"]) == ("terminated", [])
    assert "PrivateIpAddress" not in gone


# --- filters and pages on the records, the cache --------------------------------------------


def test_filters_choose_on_the_records(env: Env) -> None:
    tagged = _launch(
        env,
        2,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "web"}]}],
    )
    other = _launch(env, InstanceType="t3.small")
    running = env.running()

    def ids(*filters: tuple[str, list[str]]) -> set[str]:
        asked = [{"Name": n, "Values": v} for n, v in filters]
        return set(_instances(env, Filters=asked))

    everyone = set(tagged + other + [running])
    assert ids(("tag:role", ["web"])) == set(tagged)
    assert ids(("tag:role", ["w?b"]), ("launch-index", ["1"])) == {tagged[1]}
    assert ids(("tag-key", ["role"])) == set(tagged)
    assert ids(("instance-type", ["t3.small"])) == set(other)
    assert ids(("instance-state-name", ["running"])) == {running}
    assert ids(("instance-state-name", ["pending", "running"])) == everyone
    assert ids(("instance-state-name", ["run*"])) == {running}  # a wildcard: not in the store
    assert ids(("instance-state-name", ["pending"]), ("instance-state-name", ["running"])) == set()
    named = _instances(  # chosen by id first: one whose state the filter leaves is not missing
        env,
        InstanceIds=[tagged[0]],
        Filters=[{"Name": "instance-state-name", "Values": ["running"]}],
    )
    assert named == {}
    assert ids(("instance-state-code", ["0"])) == everyone - {running}
    assert ids(("image-id", [image_id(TINY)]), ("instance-id", [other[0], running])) == {
        other[0],
        running,
    }
    assert ids(("tag:nothing", ["*"])) == set()
    assert env.refused("alice", "DescribeInstances", Filters=[{"Name": "x", "Values": ["y"]}]) == (
        "InvalidParameterValue"
    )


def test_pages_hold_whole_instances_in_id_order(env: Env) -> None:
    made = _launch(env, 3) + _launch(env, 4)
    first = env.call("alice", "DescribeInstances", MaxResults=5)
    page1 = [i["InstanceId"] for r in first["Reservations"] for i in r["Instances"]]
    second = env.call("alice", "DescribeInstances", MaxResults=5, NextToken=first["NextToken"])
    page2 = [i["InstanceId"] for r in second["Reservations"] for i in r["Instances"]]
    assert page1 + page2 == sorted(made) and len(page1) == 5
    assert "NextToken" not in second
    launch_indexes = [
        (r["ReservationId"], i["AmiLaunchIndex"])
        for r in second["Reservations"]
        for i in r["Instances"]
    ]
    assert [n for _, n in launch_indexes] == [2, 3]
    env.call("alice", "TerminateInstances", InstanceIds=made[:1])  # the others keep their place
    after = _instances(env, InstanceIds=made[1:3])
    assert [after[i]["AmiLaunchIndex"] for i in made[1:3]] == [1, 2]
    assert _instances(env, InstanceIds=made[:1])[made[0]]["AmiLaunchIndex"] == 0


def test_a_kept_instance_is_written_again_when_anything_it_shows_changed(env: Env) -> None:
    [iid] = _launch(env)
    assert _instances(env)[iid]["Tags"] == []
    env.call("alice", "CreateTags", Resources=[iid], Tags=[{"Key": "Name", "Value": "one"}])
    assert _instances(env)[iid]["Tags"] == [{"Key": "Name", "Value": "one"}]
    env.run(env.c.service.instances.activate_vm(env.c.agent, str(_number(iid)), "h1"))
    assert _instances(env)[iid]["State"]["Name"] == "running"
    cache = env.ctx.written
    hits = cache.hits
    _instances(env)
    assert cache.hits == hits + 1


def test_the_cache_writes_only_what_changed_and_keeps_its_limit(env: Env) -> None:
    _launch(env, 3)
    found = env.run(env.c.service.instances.find(env.users["alice"], InstanceQuery()))
    rows = shown(found, env.ctx.defaults)
    writes: list[int] = []

    def write(row: Shown, volumes: Any) -> protocol.Written:
        writes.append(row.inst.id)
        return protocol.write("Instance", {"InstanceId": instance_id(row.inst.id)})

    cache = InstanceCache(limit=2)
    for row in rows:
        cache.written(row, [], write)
    assert len(cache) == 2 and writes == [r.inst.id for r in rows]
    again = cache.written(rows[2], [], write)  # kept: not written again
    assert (
        len(writes) == 3 and again.xml == f"<instanceId>{instance_id(rows[2].inst.id)}</instanceId>"
    )
    cache.written(rows[0], [], write)  # the oldest, gone past the limit: written again
    assert writes[3:] == [rows[0].inst.id]
    cache.written(rows[2]._replace(launch_index=7), [], write)  # changed: written again
    assert writes[4:] == [rows[2].inst.id]


def test_a_reservation_is_written_again_only_when_its_instances_or_owner_change() -> None:
    one, two, other = (protocol.write("Instance", {"InstanceId": f"i-{n}"}) for n in (1, 2, 3))
    writes: list[str] = []

    def write(reservation: str, owner: str, instances: Any) -> protocol.Written:
        writes.append(reservation)
        members = {"ReservationId": reservation, "OwnerId": owner, "Instances": instances}
        return protocol.write("Reservation", members)

    cache = InstanceCache(limit=2)
    first = cache.reservation("r-1", "000000000007", [one, two], write)
    assert "<instancesSet><item><instanceId>i-1</instanceId></item><item>" in first.xml
    assert cache.reservation("r-1", "000000000007", [one, two], write) is first
    assert writes == ["r-1"]
    cache.reservation("r-1", "000000000007", [one], write)  # a member gone
    cache.reservation("r-1", "000000000007", [one, other], write)  # one changed
    shown = cache.reservation("r-1", "000000000008", [one, other], write)  # another owner
    assert writes == ["r-1"] * 4 and "<ownerId>000000000008</ownerId>" in shown.xml
    cache.reservation("r-2", "000000000007", [two], write)
    cache.reservation("r-3", "000000000007", [two], write)  # r-1, the oldest, goes
    cache.reservation("r-1", "000000000008", [one, other], write)
    assert writes[4:] == ["r-2", "r-3", "r-1"]


# --- ClientToken ------------------------------------------------------------------------------


def test_a_client_token_finds_the_first_launch_even_terminated(env: Env) -> None:
    first = _launch(env, 2, ClientToken="tok-1")
    assert _launch(env, 2, ClientToken="tok-1") == first
    assert env.refused(
        "alice",
        "RunInstances",
        ImageId=image_id(TINY),
        InstanceType="t3.small",
        MinCount=1,
        MaxCount=1,
        ClientToken="tok-1",
    ) == ("IdempotentParameterMismatch")
    other = env.call(
        "bob", "RunInstances", ImageId=image_id(TINY), MinCount=1, MaxCount=1, ClientToken="tok-1"
    )
    assert other["Instances"][0]["InstanceId"] not in first
    env.call("alice", "TerminateInstances", InstanceIds=first)
    again = env.call(
        "alice", "RunInstances", ImageId=image_id(TINY), MinCount=2, MaxCount=2, ClientToken="tok-1"
    )
    assert [i["InstanceId"] for i in again["Instances"]] == first
    assert {i["State"]["Name"] for i in again["Instances"]} == {"terminated"}


def test_a_retry_answers_the_first_launch_though_a_look_up_would_now_fail(env: Env) -> None:
    # The read of an earlier launch with the token goes beside the launch's own look-ups; a
    # retry answers the earlier launch and tells none of their failures.
    env.call("alice", "CreateKeyPair", KeyName="k")
    first = _launch(env, 1, ClientToken="tok-2", KeyName="k")
    env.call("alice", "DeleteKeyPair", KeyName="k")
    assert _launch(env, 1, ClientToken="tok-2", KeyName="k") == first
    assert env.refused(
        "alice",
        "RunInstances",
        ImageId=image_id(TINY),
        MinCount=1,
        MaxCount=1,
        ClientToken="tok-3",
        KeyName="k",
    ) == ("InvalidKeyPair.NotFound")
