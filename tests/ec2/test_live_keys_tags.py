"""boto3 (and the AWS CLI), unmodified, drive a live virtual cluster's key pairs and tags: key
pairs made and imported with the fingerprints ``openssl`` and ``ssh-keygen`` compute from the
material, one used by RunInstances (its name on the instance, its public key in the launch the
node gets), tags on instances and images through CreateTags, DescribeTags and DescribeInstances'
``tag:`` filters, and users who never see each other's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.ec2.conftest import Ec2Cluster
from tests.ec2.test_live_instances import TINY, WAIT, code, tiny_ami


def sh(command: str) -> str:
    done = subprocess.run(command, shell=True, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def keygen(tmp: Path, kind: str) -> Path:
    path = tmp / f"id_{kind}"
    sh(f"ssh-keygen -q -t {kind} -N '' -C live@test -f {path}")
    return path.with_suffix(".pub")


def private_file(tmp: Path, name: str, material: str) -> Path:
    path = tmp / name
    path.write_text(material)
    path.chmod(0o600)
    return path


def test_key_pairs_are_made_imported_described_and_deleted(ec2: Ec2Cluster, tmp_path: Path) -> None:
    alice = ec2.client("alice")
    rsa = alice.create_key_pair(KeyName="live-rsa")
    pem = private_file(tmp_path, "rsa.pem", rsa["KeyMaterial"])
    sha1 = sh(f"openssl pkcs8 -in {pem} -inform PEM -outform DER -topk8 -nocrypt | openssl sha1 -c")
    assert rsa["KeyFingerprint"] == sha1.split("= ")[-1]
    ed = alice.create_key_pair(KeyName="live-ed", KeyType="ed25519")
    key = private_file(tmp_path, "ed", ed["KeyMaterial"])
    assert sh(f"ssh-keygen -l -E sha256 -f {key}").split()[1] == (
        "SHA256:" + ed["KeyFingerprint"].rstrip("=")
    )
    pub = keygen(tmp_path, "rsa")
    imported = alice.import_key_pair(KeyName="live-imported", PublicKeyMaterial=pub.read_bytes())
    der = f"ssh-keygen -e -m PKCS8 -f {pub} | openssl pkey -pubin -outform DER | openssl md5 -c"
    assert imported["KeyFingerprint"] == sh(der).split("= ")[-1]
    pub_ed = keygen(tmp_path, "ed25519")
    imported_ed = alice.import_key_pair(
        KeyName="live-imported-ed", PublicKeyMaterial=pub_ed.read_bytes()
    )
    assert (
        "SHA256:" + imported_ed["KeyFingerprint"].rstrip("=")
        == (sh(f"ssh-keygen -l -E sha256 -f {pub_ed}").split()[1])
    )
    listed = alice.describe_key_pairs(
        Filters=[{"Name": "key-name", "Values": ["live-*"]}], IncludePublicKey=True
    )["KeyPairs"]
    shown = {k["KeyName"]: k for k in listed}
    assert sorted(shown) == ["live-ed", "live-imported", "live-imported-ed", "live-rsa"]
    assert shown["live-imported"]["PublicKey"] == pub.read_text().strip()
    assert shown["live-rsa"]["KeyType"] == "rsa" and shown["live-ed"]["KeyType"] == "ed25519"
    assert shown["live-ed"]["PublicKey"].split()[:2] == sh(f"ssh-keygen -y -f {key}").split()[:2]
    with pytest.raises(ClientError) as duplicate:
        alice.create_key_pair(KeyName="live-rsa")
    assert code(duplicate) == "InvalidKeyPair.Duplicate"
    with pytest.raises(ClientError) as bad:
        alice.import_key_pair(KeyName="bad", PublicKeyMaterial=b"not a key")
    assert code(bad) == "InvalidKey.Format"
    with pytest.raises(ClientError) as missing:
        alice.describe_key_pairs(KeyNames=["live-rsa", "never-made"])
    assert code(missing) == "InvalidKeyPair.NotFound"
    for name in shown:
        assert alice.delete_key_pair(KeyName=name)["Return"] is True
    assert alice.delete_key_pair(KeyName="never-made")["Return"] is True  # as AWS
    assert (
        alice.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["live-*"]}])["KeyPairs"]
        == []
    )


def test_the_aws_cli_imports_a_key_file(ec2: Ec2Cluster, tmp_path: Path) -> None:
    pub = keygen(tmp_path, "ed25519")
    env = ec2.aws_env("bob")
    aws = str(Path(sys.executable).with_name("aws"))  # the AWS CLI of this environment
    base = [aws, "ec2", "--endpoint-url", ec2.endpoint, "--output", "json"]
    done = subprocess.run(
        [
            *base,
            "import-key-pair",
            "--key-name",
            "cli-key",
            "--public-key-material",
            f"fileb://{pub}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    made = json.loads(done.stdout)
    assert (
        "SHA256:" + made["KeyFingerprint"].rstrip("=")
        == (sh(f"ssh-keygen -l -E sha256 -f {pub}").split()[1])
    )
    subprocess.run([*base, "delete-key-pair", "--key-name", "cli-key"], env=env, check=True)


def test_a_key_pair_launches_with_the_instance(ec2: Ec2Cluster) -> None:
    alice = ec2.client("alice")
    made = alice.create_key_pair(KeyName="launch-key", KeyType="ed25519")
    [pair] = alice.describe_key_pairs(KeyNames=["launch-key"], IncludePublicKey=True)["KeyPairs"]
    ami = tiny_ami(alice)
    with pytest.raises(ClientError) as unknown:
        alice.run_instances(ImageId=ami, InstanceType=TINY, MinCount=1, MaxCount=1, KeyName="nope")
    assert code(unknown) == "InvalidKeyPair.NotFound"
    with pytest.raises(ClientError) as others:  # bob's name for a key is not alice's
        ec2.client("bob").run_instances(
            ImageId=ami, InstanceType=TINY, MinCount=1, MaxCount=1, KeyName="launch-key"
        )
    assert code(others) == "InvalidKeyPair.NotFound"
    [inst] = alice.run_instances(
        ImageId=ami, InstanceType=TINY, MinCount=1, MaxCount=1, KeyName="launch-key"
    )["Instances"]
    iid = inst["InstanceId"]
    assert inst["KeyName"] == "launch-key"
    alice.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    found = alice.describe_instances(Filters=[{"Name": "key-name", "Values": ["launch-key"]}])
    assert [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]] == [iid]
    hints = ec2.running.admin.get_instance(int(iid[2:], 16)).hints
    assert hints["__ec2.key"] == "launch-key"
    assert hints["__ec2.pubkey"] == pair["PublicKey"]
    assert made["KeyPairId"] == pair["KeyPairId"]
    alice.terminate_instances(InstanceIds=[iid])
    alice.delete_key_pair(KeyName="launch-key")
    alice.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)


def _tags(client: Any, **params: Any) -> list[tuple[str, str, str]]:
    found = client.describe_tags(**params)["Tags"]
    return [(t["ResourceId"], t["Key"], t["Value"]) for t in found]


def _running(client: Any, **params: Any) -> list[str]:
    filters = [*params.pop("Filters", []), {"Name": "instance-state-name", "Values": ["running"]}]
    found = client.describe_instances(Filters=filters, **params)["Reservations"]
    return sorted(i["InstanceId"] for r in found for i in r["Instances"])


def test_instance_tags_are_set_found_and_removed_by_their_owner_only(ec2: Ec2Cluster) -> None:
    alice, bob, admin = ec2.client("alice"), ec2.client("bob"), ec2.client("admin")
    ami = tiny_ami(alice)
    ids = sorted(
        alice.run_instances(ImageId=ami, InstanceType=TINY, MinCount=1, MaxCount=1)["Instances"][0][
            "InstanceId"
        ]
        for _ in range(2)
    )
    alice.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=WAIT)
    alice.create_tags(Resources=ids, Tags=[{"Key": "tier", "Value": "web"}])
    alice.create_tags(Resources=[ids[0]], Tags=[{"Key": "Name", "Value": "first"}])
    mine = _tags(alice, Filters=[{"Name": "resource-id", "Values": ids}])
    assert mine == [(ids[0], "Name", "first"), (ids[0], "tier", "web"), (ids[1], "tier", "web")]
    assert _running(alice, Filters=[{"Name": "tag:tier", "Values": ["web"]}]) == ids
    assert _running(alice, Filters=[{"Name": "tag:Name", "Values": ["fir*"]}]) == [ids[0]]
    assert _running(alice, Filters=[{"Name": "tag-key", "Values": ["Name"]}]) == [ids[0]]
    for call in (bob.create_tags, bob.delete_tags):
        with pytest.raises(ClientError) as hidden:
            call(Resources=[ids[0]], Tags=[{"Key": "x", "Value": "y"}])
        assert code(hidden) == "InvalidInstanceID.NotFound"
    assert not [t for t in _tags(bob) if t[0] in ids]
    assert [t for t in _tags(admin) if t[0] in ids] == mine  # an administrator sees all
    with pytest.raises(ClientError) as limit:
        alice.create_tags(
            Resources=[ids[1]], Tags=[{"Key": f"k{n}", "Value": ""} for n in range(50)]
        )
    assert code(limit) == "TagLimitExceeded"
    with pytest.raises(ClientError) as reserved:
        alice.create_tags(Resources=[ids[1]], Tags=[{"Key": "aws:x", "Value": ""}])
    assert code(reserved) == "InvalidParameterValue"
    alice.delete_tags(Resources=ids, Tags=[{"Key": "tier"}])
    assert _tags(alice, Filters=[{"Name": "resource-id", "Values": ids}]) == [
        (ids[0], "Name", "first")
    ]
    assert _running(alice, Filters=[{"Name": "tag:tier", "Values": ["web"]}]) == []
    # the instances kept their state through it all
    assert _running(alice, InstanceIds=ids) == ids
    alice.terminate_instances(InstanceIds=ids)
    alice.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=WAIT)


def test_image_tags_are_set_by_administrators_and_seen_by_all(ec2: Ec2Cluster) -> None:
    alice, bob, admin = ec2.client("alice"), ec2.client("bob"), ec2.client("admin")
    ami = tiny_ami(alice)
    with pytest.raises(ClientError) as refused:
        alice.create_tags(Resources=[ami], Tags=[{"Key": "os", "Value": "tiny"}])
    assert code(refused) == "UnauthorizedOperation"
    assert "admin" in refused.value.response["Error"]["Message"]
    admin.create_tags(Resources=[ami], Tags=[{"Key": "os", "Value": "tiny"}])
    try:
        assert _tags(bob, Filters=[{"Name": "resource-type", "Values": ["image"]}]) == [
            (ami, "os", "tiny")
        ]
        [image] = bob.describe_images(ImageIds=[ami])["Images"]
        assert image["Tags"] == [{"Key": "os", "Value": "tiny"}]
        with pytest.raises(ClientError) as unknown:
            admin.create_tags(Resources=["ami-0123456789abcdef0"], Tags=[{"Key": "a", "Value": ""}])
        assert code(unknown) == "InvalidAMIID.NotFound"
        with pytest.raises(ClientError) as bad:
            admin.create_tags(Resources=["vol-nothing"], Tags=[{"Key": "a", "Value": ""}])
        assert code(bad) == "InvalidID"
    finally:
        admin.delete_tags(Resources=[ami])
    assert _tags(bob, Filters=[{"Name": "resource-id", "Values": [ami]}]) == []
