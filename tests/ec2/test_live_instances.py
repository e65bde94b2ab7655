"""boto3, unmodified, drives a live virtual cluster's EC2 API: discovery, images, instances
launched, described, filtered, paged and terminated, with AWS's errors, as users who see only
their own instances."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.ec2.conftest import REGION, Ec2Cluster

TINY = "tashi.tiny"
WAIT = {"Delay": 1, "MaxAttempts": 120}


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def tiny_ami(client: Any) -> str:
    images = client.describe_images(Filters=[{"Name": "name", "Values": ["tashi-tiny.qcow2"]}])
    return str(images["Images"][0]["ImageId"])


def test_discovery_answers_what_tools_ask_first(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    attributes = client.describe_account_attributes()["AccountAttributes"]
    platforms = next(a for a in attributes if a["AttributeName"] == "supported-platforms")
    assert platforms["AttributeValues"] == [{"AttributeValue": "VPC"}]
    assert [r["RegionName"] for r in client.describe_regions()["Regions"]] == [REGION]
    zones = client.describe_availability_zones()["AvailabilityZones"]
    assert [(z["ZoneName"], z["State"]) for z in zones] == [(f"{REGION}a", "available")]
    types = client.describe_instance_types(InstanceTypes=["t3.micro", TINY])["InstanceTypes"]
    sizes = {
        t["InstanceType"]: (t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"])
        for t in types
    }
    assert sizes == {"t3.micro": (2, 1024), TINY: (1, 128)}


def test_images_of_the_store_are_amis(ec2: Ec2Cluster) -> None:
    client = ec2.client("bob")
    ami = tiny_ami(client)
    assert ami.startswith("ami-") and len(ami) == 21
    again = client.describe_images(ImageIds=[ami])["Images"]
    assert [i["Name"] for i in again] == ["tashi-tiny.qcow2"]
    with pytest.raises(ClientError) as missing:
        client.describe_images(ImageIds=["ami-0123456789abcdef0"])
    assert code(missing) == "InvalidAMIID.NotFound"
    with pytest.raises(ClientError) as malformed:
        client.describe_images(ImageIds=["nonsense"])
    assert code(malformed) == "InvalidAMIID.Malformed"


def test_an_instance_is_launched_runs_and_is_terminated(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    made = client.run_instances(
        ImageId=tiny_ami(client),
        InstanceType=TINY,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "web"}]}],
    )
    assert made["ReservationId"].startswith("r-")
    [inst] = made["Instances"]
    iid = inst["InstanceId"]
    assert inst["State"]["Name"] == "pending" and inst["InstanceType"] == TINY
    client.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    found = client.describe_instances(
        Filters=[
            {"Name": "tag:role", "Values": ["web"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [iid]
    shown = found[0]["Instances"][0]
    assert shown["Placement"]["AvailabilityZone"] == f"{REGION}a"
    assert shown["Tags"] == [{"Key": "role", "Value": "web"}]
    gone = client.terminate_instances(InstanceIds=[iid])["TerminatingInstances"]
    assert gone[0]["PreviousState"]["Name"] == "running"
    assert gone[0]["CurrentState"]["Name"] in ("shutting-down", "terminated")
    client.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)


def test_min_and_max_count_start_a_group_or_nothing(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    ami = tiny_ami(client)
    before = _ids(client)
    with pytest.raises(ClientError) as short:
        client.run_instances(ImageId=ami, InstanceType="t3.medium", MinCount=40, MaxCount=40)
    assert code(short) == "InsufficientInstanceCapacity"
    assert _ids(client) == before  # nothing left behind
    made = client.run_instances(ImageId=ami, InstanceType=TINY, MinCount=2, MaxCount=2)
    ids = [i["InstanceId"] for i in made["Instances"]]
    assert sorted(i["AmiLaunchIndex"] for i in made["Instances"]) == [0, 1]
    client.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=WAIT)
    client.terminate_instances(InstanceIds=ids)
    client.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=WAIT)


def _ids(client: Any) -> set[str]:
    reservations = client.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    return {i["InstanceId"] for r in reservations for i in r["Instances"]}


def test_a_client_token_makes_a_retry_answer_the_first_launch(ec2: Ec2Cluster) -> None:
    client = ec2.client("bob")
    ami, token = tiny_ami(client), str(uuid.uuid4())
    first = client.run_instances(
        ImageId=ami, InstanceType=TINY, MinCount=1, MaxCount=1, ClientToken=token
    )
    again = client.run_instances(
        ImageId=ami, InstanceType=TINY, MinCount=1, MaxCount=1, ClientToken=token
    )
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == [
        i["InstanceId"] for i in first["Instances"]
    ]
    with pytest.raises(ClientError) as mismatch:
        client.run_instances(
            ImageId=ami, InstanceType="t3.nano", MinCount=1, MaxCount=1, ClientToken=token
        )
    assert code(mismatch) == "IdempotentParameterMismatch"
    client.terminate_instances(InstanceIds=[first["Instances"][0]["InstanceId"]])


def test_users_see_and_touch_only_their_own_instances(ec2: Ec2Cluster) -> None:
    alice, bob, admin = ec2.client("alice"), ec2.client("bob"), ec2.client("admin")
    made = alice.run_instances(ImageId=tiny_ami(alice), InstanceType=TINY, MinCount=1, MaxCount=1)
    iid = made["Instances"][0]["InstanceId"]
    for call in (bob.describe_instances, bob.terminate_instances):
        with pytest.raises(ClientError) as hidden:
            call(InstanceIds=[iid])
        assert code(hidden) == "InvalidInstanceID.NotFound"
    assert iid not in _ids(bob)
    assert iid in _ids(admin)
    alice.terminate_instances(InstanceIds=[iid])


def test_ids_that_are_malformed_or_unknown(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    with pytest.raises(ClientError) as malformed:
        client.describe_instances(InstanceIds=["i-xyz"])
    assert code(malformed) == "InvalidInstanceID.Malformed"
    with pytest.raises(ClientError) as unknown:
        client.terminate_instances(InstanceIds=["i-0fffffffffffffff0"])
    assert code(unknown) == "InvalidInstanceID.NotFound"


def test_paging_walks_every_instance_once(ec2: Ec2Cluster) -> None:
    client = ec2.client("bob")
    made = client.run_instances(ImageId=tiny_ami(client), InstanceType=TINY, MinCount=1, MaxCount=6)
    ids = {i["InstanceId"] for i in made["Instances"]}
    seen: list[str] = []
    for page in client.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "reservation-id", "Values": [made["ReservationId"]]}],
        PaginationConfig={"PageSize": 5},
    ):
        seen += [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]
    assert sorted(seen) == sorted(ids)
    with pytest.raises(ClientError) as forged:
        client.describe_instances(MaxResults=5, NextToken="Zm9yZ2Vk")
    assert code(forged) == "InvalidNextToken"
    client.terminate_instances(InstanceIds=sorted(ids))


def test_signatures_and_keys_are_checked(ec2: Ec2Cluster) -> None:
    wrong = ec2.client("alice", aws_secret_access_key="x" * 40)
    with pytest.raises(ClientError) as bad:
        wrong.describe_instances()
    assert code(bad) == "SignatureDoesNotMatch"
    unknown = ec2.client("alice", aws_access_key_id="AKIAIOSFODNN7EXAMPLE")
    with pytest.raises(ClientError) as who:
        unknown.describe_instances()
    assert code(who) == "AuthFailure"
    elsewhere = ec2.client("alice", region_name="us-east-1")
    with pytest.raises(ClientError) as region:
        elsewhere.describe_instances()
    assert code(region) == "SignatureDoesNotMatch"


def test_a_dry_run_says_it_would_have_worked(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    with pytest.raises(ClientError) as dry:
        client.run_instances(ImageId=tiny_ami(client), MinCount=1, MaxCount=1, DryRun=True)
    assert code(dry) == "DryRunOperation"
    assert dry.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
