"""DescribeInstanceAttribute and ModifyInstanceAttribute with boto3 on a live cluster: a type
changed while stopped is the size the instance starts with; termination protection."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.ec2.conftest import Ec2Cluster
from tests.ec2.test_live_instances import TINY, WAIT, code, tiny_ami


def test_the_type_changes_while_stopped_and_the_instance_starts_with_it(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    made = client.run_instances(
        ImageId=tiny_ami(client), InstanceType=TINY, MinCount=1, MaxCount=1, UserData="echo hi"
    )
    iid = made["Instances"][0]["InstanceId"]
    client.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    shown = client.describe_instance_attribute(InstanceId=iid, Attribute="instanceType")
    assert shown["InstanceType"]["Value"] == TINY
    with pytest.raises(ClientError) as running:
        client.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.nano"})
    assert code(running) == "IncorrectInstanceState"
    client.stop_instances(InstanceIds=[iid], Force=True)
    client.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    client.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.nano"})
    client.modify_instance_attribute(InstanceId=iid, UserData={"Value": b"echo again"})
    inst = ec2.running.admin.get_instance(int(iid[2:], 16))
    assert (inst.cores, inst.memory) == (2, 512)
    data = client.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert data["UserData"]["Value"] == "ZWNobyBhZ2Fpbg=="
    shown = client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert shown["InstanceType"] == "t3.nano"
    client.terminate_instances(InstanceIds=[iid])


def test_termination_protection(ec2: Ec2Cluster) -> None:
    client = ec2.client("bob")
    made = client.run_instances(ImageId=tiny_ami(client), InstanceType=TINY, MinCount=1, MaxCount=1)
    iid = made["Instances"][0]["InstanceId"]
    client.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": True})
    shown = client.describe_instance_attribute(InstanceId=iid, Attribute="disableApiTermination")
    assert shown["DisableApiTermination"]["Value"] is True
    with pytest.raises(ClientError) as refused:
        client.terminate_instances(InstanceIds=[iid])
    assert code(refused) == "OperationNotPermitted"
    client.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": False})
    client.terminate_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as unknown:
        client.describe_instance_attribute(InstanceId=iid, Attribute="kernelOops")
    assert code(unknown) in ("InvalidParameterValue", "InvalidInstanceID.NotFound")
