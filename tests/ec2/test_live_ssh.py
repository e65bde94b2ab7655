"""The SSH login of issue 16 on the live cluster, with boto3 and the real ``ssh`` client: a user
makes a key pair (CreateKeyPair, RSA in PEM, as ``aws ec2 create-key-pair`` gives it), lets in
TCP 22 in their ``default`` security group (every instance is in it), and launches the Debian
cloud-init image with ``KeyName`` and a user-data shell script that writes a marker. Once the
instance runs, ``ssh`` from the cluster manager's namespace (which has a leg on every VM
network) logs in as ``debian`` with the key pair's private key, finds the marker the user data
wrote, and reads the instance id the metadata service gives the guest: the one boto3 was told.
One Debian VM: about a minute of TCG boot, most of it cloud-init's Python.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tashi.api.schemas import UserIn
from tashi.devcluster.processes import wait_for
from tests.ec2.conftest import Ec2Cluster, Key

DEBIAN = "tashi-debian.qcow2"
TYPE = "t3.nano"  # 512 MB: cloud-init's Python wants more than the tiny guest's 128
USER = "debian"  # cloud-init's default user on Debian
BOOT = 400.0  # a TCG boot of Debian and cloud-init on a busy 2-core machine: 50 to 150 s
MARKER = "/var/tmp/tashi-user-data-ran"
USER_DATA = f"""#!/bin/sh
echo "{{token}} $(id -un)" > {MARKER}
"""
METADATA = (
    "python3 -c 'import urllib.request as u;"
    ' print(u.urlopen("http://169.254.169.254/latest/meta-data/instance-id").read().decode())\''
)

pytestmark = pytest.mark.timeout(900)


@dataclass
class Login:
    ec2: Ec2Cluster
    client: Any
    key: Path  # the private key
    instance: str
    token: str

    def ssh(self, command: str, *options: str) -> subprocess.CompletedProcess[str]:
        """``command`` run in the instance by ``ssh`` from the cluster manager's namespace."""
        address = self.address()
        argv = ["ip", "netns", "exec", self.ec2.running.plan.cm_ns, "ssh", "-i", str(self.key)]
        argv += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"]
        argv += ["-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5"]
        argv += ["-o", "LogLevel=ERROR", *options, f"{USER}@{address}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def address(self) -> str:
        found = self.client.describe_instances(InstanceIds=[self.instance])
        address: str = found["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
        return address


def _user(ec2: Ec2Cluster, name: str) -> Any:
    """A user of this module's own (so its ``default`` group's rules touch no other test)."""
    admin = ec2.running.admin
    admin.register_user(UserIn(name=name, password=f"{name}-password-1"))
    made = admin.create_access_key(name)
    assert made.secretAccessKey is not None
    ec2.keys[name] = Key(made.accessKeyId, made.secretAccessKey)
    return ec2.client(name)


@pytest.fixture(scope="module")
def login(ec2: Ec2Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Login]:
    client = _user(ec2, "dora")
    made = client.create_key_pair(KeyName="dora-key")
    key = tmp_path_factory.mktemp("ssh") / "dora-key.pem"
    key.write_text(made["KeyMaterial"])
    key.chmod(0o600)
    client.authorize_security_group_ingress(
        GroupName="default",
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "ssh"}]}
        ],
    )  # fmt: skip
    images = client.describe_images(Filters=[{"Name": "name", "Values": [DEBIAN]}])["Images"]
    assert [i["Name"] for i in images] == [DEBIAN]
    token = str(uuid.uuid4())
    launched = client.run_instances(
        ImageId=images[0]["ImageId"],
        InstanceType=TYPE,
        MinCount=1,
        MaxCount=1,
        KeyName="dora-key",
        UserData=USER_DATA.format(token=token),
    )
    instance = launched["Instances"][0]["InstanceId"]
    started = time.monotonic()
    try:
        client.get_waiter("instance_running").wait(
            InstanceIds=[instance], WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        print(f"{instance} running after {time.monotonic() - started:.1f} s")
        yield Login(ec2, client, key, instance, token)
    finally:
        client.terminate_instances(InstanceIds=[instance])


def test_ssh_with_the_key_pair_finds_the_user_data_ran_and_the_instance_id(login: Login) -> None:
    started = time.monotonic()

    def logged_in() -> subprocess.CompletedProcess[str] | None:
        done = login.ssh(f"cat {MARKER}")
        return done if done.returncode == 0 else None

    done = wait_for("an ssh login that finds the user data's marker", logged_in, BOOT, every=2.0)
    print(f"first ssh login with the marker {time.monotonic() - started:.1f} s after running")
    assert done.stdout.split() == [login.token, "root"]  # cloud-init ran it, as root
    asked = login.ssh(METADATA)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip() == login.instance
    refused = login.ssh("true", "-o", "PubkeyAuthentication=no")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
