"""RegisterImage and DeregisterImage onto the image store, with boto3 on a live cluster."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from tests.ec2.conftest import Ec2Cluster
from tests.ec2.test_live_instances import TINY, WAIT, code, tiny_ami


def test_a_registered_image_launches_and_only_an_admin_deregisters_it(ec2: Ec2Cluster) -> None:
    admin, alice = ec2.client("admin"), ec2.client("alice")
    name = f"lab-{uuid.uuid4().hex[:8]}.qcow2"
    ami = admin.register_image(Name=name, ImageLocation=tiny_ami(admin))["ImageId"]
    shown = alice.describe_images(ImageIds=[ami])["Images"]
    assert [(i["Name"], i["State"]) for i in shown] == [(name, "available")]
    made = alice.run_instances(ImageId=ami, InstanceType=TINY, MinCount=1, MaxCount=1)
    iid = made["Instances"][0]["InstanceId"]
    alice.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    with pytest.raises(ClientError) as duplicate:
        admin.register_image(Name=name, ImageLocation=tiny_ami(admin))
    assert code(duplicate) == "InvalidAMIName.Duplicate"
    with pytest.raises(ClientError) as user:
        alice.deregister_image(ImageId=ami)
    assert code(user) == "UnauthorizedOperation"
    alice.terminate_instances(InstanceIds=[iid])
    alice.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    admin.create_tags(Resources=[ami], Tags=[{"Key": "team", "Value": "lab"}])
    assert admin.deregister_image(ImageId=ami)["Return"] is True
    with pytest.raises(ClientError) as gone:
        alice.describe_images(ImageIds=[ami])
    assert code(gone) == "InvalidAMIID.NotFound"
    again = admin.register_image(Name=name, ImageLocation=tiny_ami(admin))["ImageId"]
    assert again == ami  # the id follows from the name...
    assert alice.describe_images(ImageIds=[ami])["Images"][0]["Tags"] == []  # ...not the tags
    admin.deregister_image(ImageId=ami)


def test_register_refuses_what_it_cannot_do(ec2: Ec2Cluster) -> None:
    admin = ec2.client("admin")
    with pytest.raises(ClientError) as malformed:
        admin.register_image(Name="lab/one", ImageLocation=tiny_ami(admin))
    assert code(malformed) == "InvalidAMIName.Malformed"
    with pytest.raises(ClientError) as snapshot:
        admin.register_image(
            Name="from-snap",
            RootDeviceName="/dev/vda",
            BlockDeviceMappings=[
                {"DeviceName": "/dev/vda", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}
            ],
        )
    assert code(snapshot) == "InvalidParameterCombination"
    with pytest.raises(ClientError) as missing:
        admin.register_image(Name="nowhere", ImageLocation="no-such-image.qcow2")
    assert code(missing) == "InvalidParameterValue"
