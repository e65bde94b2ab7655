"""boto3 stops, starts, reboots and reads the console of instances on a live virtual cluster:
a stopped instance keeps its id and its own disk and boots again, and terminating it removes
that disk."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tashi.images.markers import UP
from tests.ec2.conftest import Ec2Cluster
from tests.ec2.test_live_instances import TINY, WAIT, code, tiny_ami

BOOT = 120.0


def _one(client: Any) -> str:
    made = client.run_instances(ImageId=tiny_ami(client), InstanceType=TINY, MinCount=1, MaxCount=1)
    iid = str(made["Instances"][0]["InstanceId"])
    client.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    return iid


def _console(client: Any, iid: str) -> str:
    out = client.get_console_output(InstanceId=iid)
    return str(out.get("Output") or "")


def _wait_for_console(client: Any, iid: str, marker: str, since: int = 0) -> str:
    deadline = time.monotonic() + BOOT
    while time.monotonic() < deadline:
        text = _console(client, iid)
        if text.count(marker) > since:
            return text
        time.sleep(0.5)
    raise AssertionError(f"{iid} did not print {marker!r} within {BOOT} s")


def _store(ec2: Ec2Cluster) -> Path:
    return ec2.running.layout.vfs / "images"


def test_the_console_output_is_the_serial_console(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    iid = _one(client)
    assert UP in _wait_for_console(client, iid, UP)
    client.terminate_instances(InstanceIds=[iid])


def test_a_reboot_boots_the_guest_again(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    iid = _one(client)
    _wait_for_console(client, iid, UP)
    client.reboot_instances(InstanceIds=[iid])
    assert _wait_for_console(client, iid, UP, since=1).count(UP) >= 2
    client.terminate_instances(InstanceIds=[iid])


def test_a_stopped_instance_keeps_its_id_and_disk_and_starts_again(ec2: Ec2Cluster) -> None:
    client = ec2.client("bob")
    iid = _one(client)
    own = ec2.running.admin.get_instance(int(iid[2:], 16)).name + "-root"
    root = {p.name for p in _store(ec2).iterdir() if own in p.name and p.suffix == ".qcow2"}
    assert len(root) == 1, "RunInstances gives the instance its own root disk in the store"
    stopped = client.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert stopped["PreviousState"]["Name"] == "running"
    client.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    assert {p.name for p in _store(ec2).iterdir()} >= root
    started = client.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert started["PreviousState"]["Name"] == "stopped"
    assert started["CurrentState"]["Name"] == "pending"
    client.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    _wait_for_console(client, iid, UP)
    client.stop_instances(InstanceIds=[iid], Force=True)
    client.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    client.terminate_instances(InstanceIds=[iid])
    client.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    left = [p.name for p in _store(ec2).iterdir() if own in p.name]
    assert not left, f"DeleteOnTermination left {left}"


def test_a_verb_in_the_wrong_state_is_incorrect_instance_state(ec2: Ec2Cluster) -> None:
    client = ec2.client("alice")
    iid = _one(client)
    client.stop_instances(InstanceIds=[iid], Force=True)
    client.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    with pytest.raises(ClientError) as rebooting:
        client.reboot_instances(InstanceIds=[iid])
    assert code(rebooting) == "IncorrectInstanceState"
    assert _console(client, iid) == ""
    client.terminate_instances(InstanceIds=[iid])


def test_instance_status_of_running_instances(ec2: Ec2Cluster) -> None:
    client = ec2.client("bob")
    iid = _one(client)
    statuses = client.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"]
    assert [(s["InstanceId"], s["InstanceState"]["Name"]) for s in statuses] == [(iid, "running")]
    client.terminate_instances(InstanceIds=[iid])
    client.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    assert client.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"] == []
    everything = client.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)
    assert everything["InstanceStatuses"][0]["InstanceState"]["Name"] == "terminated"
