"""Key pairs and tags through the EC2 actions, in process, on the memory and SQLite stores:
each request is written by botocore's own EC2 serializer, read by ``protocol.parse``, answered
by the action and read back by botocore's parser, so the shapes are boto3's. Fingerprints are
checked against ``openssl`` and ``ssh-keygen`` run on the material.

The live cluster (real boto3 over HTTP, instances that run) is ``test_live_keys_tags.py``.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization as ser

from tashi.clustermanager.service import ClusterService, build_service
from tashi.config.ec2 import Ec2Settings, InstanceTypesSettings
from tashi.domain.ids import NetworkId, UserId
from tashi.domain.models import Instance, Principal, Role
from tashi.domain.operations import DiskRequest, InstanceQuery, VmRequest
from tashi.frontends.ec2.context import Ec2Context
from tashi.frontends.ec2.ids import image_id, instance_id
from tests.api.conftest import make_settings, make_store
from tests.ec2 import inprocess
from tests.ec2.inprocess import Refused

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Env:
    ctx: Ec2Context
    service: ClusterService
    loop: asyncio.AbstractEventLoop
    users: dict[str, Principal]
    tmp: Path
    made: int = 0

    def call(self, who: str, action: str, **params: Any) -> dict[str, Any]:
        return inprocess.call(self.ctx, self.users[who], self.run, action, params)

    def refused(self, who: str, action: str, **params: Any) -> Refused:
        with pytest.raises(Refused) as caught:
            self.call(who, action, **params)
        return caught.value

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def instance(self, who: str) -> Instance:
        self.made += 1
        request = VmRequest(name=f"vm-{who}-{self.made}", disks=[DiskRequest(uri="base.qcow2")])
        return self.run(self.service.instances.create_vm(self.users[who], request))


@pytest.fixture(params=["memory", "sqlite"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    settings = make_settings(tmp_path)
    settings.cluster_manager.state_dir.mkdir(mode=0o700)
    store = make_store(request.param, settings)
    service = build_service(settings, store)
    users: dict[str, Principal] = {}
    with store.transaction() as tx:
        tx.networks.add(NetworkId(1), "default")
        for name, role in (("alice", Role.user), ("bob", Role.user), ("root", Role.admin)):
            user = tx.users.add(name, role=role, priority=0, password_hash="h", now=T0)
            users[name] = Principal(UserId(user.id), name, role)
    ctx = Ec2Context.build(service, Ec2Settings(), InstanceTypesSettings(), "localhost:8773")
    loop = asyncio.new_event_loop()
    yield Env(ctx, service, loop, users, tmp_path)
    loop.run_until_complete(service.aclose())
    loop.close()
    service.close()


def sh(command: str, data: bytes = b"") -> str:
    done = subprocess.run(command, shell=True, input=data, capture_output=True, check=True)
    return done.stdout.decode().strip()


def keygen(tmp: Path, kind: str, bits: str = "") -> Path:
    path = tmp / f"id_{kind}{bits}"
    size = f"-b {bits}" if bits else ""
    sh(f"ssh-keygen -q -t {kind} {size} -N '' -C 'me@laptop' -f {path}")
    return path


# -- key pairs ------------------------------------------------------------------------------


def test_a_made_rsa_key_pair_answers_its_private_key_once_with_aws_fingerprint(env: Env) -> None:
    made = env.call("alice", "CreateKeyPair", KeyName="deploy")
    pem = made["KeyMaterial"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert made["KeyPairId"].startswith("key-") and len(made["KeyPairId"]) == 21
    key = env.tmp / "deploy.pem"
    key.write_text(pem)
    key.chmod(0o600)
    sha1 = sh(f"openssl pkcs8 -in {key} -inform PEM -outform DER -topk8 -nocrypt | openssl sha1 -c")
    assert made["KeyFingerprint"] == sha1.split("= ")[-1]
    [shown] = env.call("alice", "DescribeKeyPairs", IncludePublicKey=True)["KeyPairs"]
    assert (shown["KeyName"], shown["KeyType"]) == ("deploy", "rsa")
    assert shown["KeyFingerprint"] == made["KeyFingerprint"]
    assert "KeyMaterial" not in shown
    assert shown["PublicKey"].split()[:2] == sh(f"ssh-keygen -y -f {key}").split()[:2]
    private = ser.load_pem_private_key(pem.encode(), None)
    assert private.key_size == 2048  # type: ignore[union-attr]


def test_a_made_ed25519_key_pair_has_openssh_sha256_fingerprint(env: Env) -> None:
    made = env.call("alice", "CreateKeyPair", KeyName="ed", KeyType="ed25519")
    key = env.tmp / "ed"
    key.write_text(made["KeyMaterial"])
    key.chmod(0o600)
    listed = sh(f"ssh-keygen -l -E sha256 -f {key}").split()[1]
    assert listed == "SHA256:" + made["KeyFingerprint"].rstrip("=")
    assert made["KeyFingerprint"].endswith("=")  # AWS keeps base64's padding
    [shown] = env.call("alice", "DescribeKeyPairs", KeyNames=["ed"])["KeyPairs"]
    assert shown["KeyType"] == "ed25519" and "PublicKey" not in shown


def test_key_formats_and_types_tashi_does_not_make_are_refused(env: Env) -> None:
    ppk = env.refused("alice", "CreateKeyPair", KeyName="p", KeyFormat="ppk")
    assert ppk.code == "InvalidParameterValue" and "ppk" in ppk.message
    bad = env.refused("alice", "CreateKeyPair", KeyName="p", KeyType="dsa")
    assert bad.code == "InvalidParameterValue"
    long = env.refused("alice", "CreateKeyPair", KeyName="n" * 256)
    assert long.code == "InvalidParameterValue"
    assert env.call("alice", "DescribeKeyPairs")["KeyPairs"] == []


def test_names_are_unique_per_user_and_key_pairs_private_to_it(env: Env) -> None:
    mine = env.call("alice", "CreateKeyPair", KeyName="main", KeyType="ed25519")
    assert env.refused("alice", "CreateKeyPair", KeyName="main").code == "InvalidKeyPair.Duplicate"
    pub = (keygen(env.tmp, "ed25519").with_suffix(".pub")).read_bytes()
    dup = env.refused("alice", "ImportKeyPair", KeyName="main", PublicKeyMaterial=pub)
    assert dup.code == "InvalidKeyPair.Duplicate"
    env.call("bob", "CreateKeyPair", KeyName="main", KeyType="ed25519")  # bob's own
    [bobs] = env.call("bob", "DescribeKeyPairs")["KeyPairs"]
    assert bobs["KeyPairId"] != mine["KeyPairId"]
    gone = env.refused("bob", "DescribeKeyPairs", KeyPairIds=[mine["KeyPairId"]])
    assert gone.code == "InvalidKeyPair.NotFound"
    assert env.refused("root", "DescribeKeyPairs", KeyNames=["main"]).code == (
        "InvalidKeyPair.NotFound"
    )  # an administrator's key pairs are their own too
    # bob deleting alice's by id changes nothing (and is no error, as an unknown one)
    assert env.call("bob", "DeleteKeyPair", KeyPairId=mine["KeyPairId"])["Return"] is True
    assert len(env.call("alice", "DescribeKeyPairs")["KeyPairs"]) == 1


@pytest.mark.parametrize(("kind", "bits"), [("rsa", "2048"), ("ed25519", ""), ("ecdsa", "384")])
def test_imported_keys_have_aws_fingerprints(env: Env, kind: str, bits: str) -> None:
    path = keygen(env.tmp, kind, bits)
    pub = path.with_suffix(".pub")
    made = env.call("alice", "ImportKeyPair", KeyName=kind, PublicKeyMaterial=pub.read_bytes())
    if kind == "rsa":  # MD5 of the DER public key, not OpenSSH's MD5 of its own encoding
        der = f"ssh-keygen -e -m PKCS8 -f {pub} | openssl pkey -pubin -outform DER"
        assert made["KeyFingerprint"] == sh(f"{der} | openssl md5 -c").split("= ")[-1]
        openssh_md5 = sh(f"ssh-keygen -l -E md5 -f {pub}").split()[1]
        assert openssh_md5 != "MD5:" + made["KeyFingerprint"]
    else:
        listed = sh(f"ssh-keygen -l -E sha256 -f {pub}").split()[1]
        assert "SHA256:" + made["KeyFingerprint"].rstrip("=") == listed
    [shown] = env.call("alice", "DescribeKeyPairs", KeyNames=[kind], IncludePublicKey=True)[
        "KeyPairs"
    ]
    assert shown["KeyType"] == kind
    assert shown["PublicKey"] == pub.read_text().strip()  # the line as given, comment included
    # the same key in RFC 4716's format and as base64 DER has the same fingerprint
    rfc = sh(f"ssh-keygen -e -f {pub}").encode()
    again = env.call("alice", "ImportKeyPair", KeyName=f"{kind}-rfc", PublicKeyMaterial=rfc)
    assert again["KeyFingerprint"] == made["KeyFingerprint"]
    if kind == "rsa":
        der_key = subprocess.run(
            f"ssh-keygen -e -m PKCS8 -f {pub} | openssl pkey -pubin -outform DER",
            shell=True,
            capture_output=True,
            check=True,
        ).stdout
        b64 = base64.b64encode(der_key)
        third = env.call("alice", "ImportKeyPair", KeyName="der", PublicKeyMaterial=b64)
        assert third["KeyFingerprint"] == made["KeyFingerprint"]


def test_material_that_is_no_public_key_is_refused(env: Env) -> None:
    for material in (b"not a key", b"ssh-rsa AAAAnotbase64!", b"ssh-dss AAAAB3NzaC1kc3MAAACBAP"):
        refused = env.refused("alice", "ImportKeyPair", KeyName="x", PublicKeyMaterial=material)
        assert refused.code == "InvalidKey.Format", material
    private = keygen(env.tmp, "ed25519").read_bytes()
    refused = env.refused("alice", "ImportKeyPair", KeyName="x", PublicKeyMaterial=private)
    assert refused.code == "InvalidKey.Format"
    assert env.call("alice", "DescribeKeyPairs")["KeyPairs"] == []


def test_describe_key_pairs_filters_and_names(env: Env) -> None:
    spec = [{"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "ops"}]}]
    a = env.call(
        "alice", "CreateKeyPair", KeyName="web-1", KeyType="ed25519", TagSpecifications=spec
    )
    assert a["Tags"] == [{"Key": "team", "Value": "ops"}]
    env.call("alice", "CreateKeyPair", KeyName="web-2", KeyType="ed25519")
    env.call("alice", "CreateKeyPair", KeyName="db")

    def names(**params: Any) -> list[str]:
        return [k["KeyName"] for k in env.call("alice", "DescribeKeyPairs", **params)["KeyPairs"]]

    assert names() == ["db", "web-1", "web-2"]
    assert names(Filters=[{"Name": "key-name", "Values": ["web-*"]}]) == ["web-1", "web-2"]
    assert names(Filters=[{"Name": "key-type", "Values": ["rsa"]}]) == ["db"]
    assert names(Filters=[{"Name": "tag:team", "Values": ["ops"]}]) == ["web-1"]
    assert names(Filters=[{"Name": "tag-key", "Values": ["team"]}]) == ["web-1"]
    assert names(Filters=[{"Name": "fingerprint", "Values": [a["KeyFingerprint"]]}]) == ["web-1"]
    assert names(Filters=[{"Name": "key-pair-id", "Values": [a["KeyPairId"]]}]) == ["web-1"]
    assert names(KeyPairIds=[a["KeyPairId"]]) == ["web-1"]
    assert names(KeyNames=["db", "web-2"]) == ["db", "web-2"]
    missing = env.refused("alice", "DescribeKeyPairs", KeyNames=["db", "nope"])
    assert missing.code == "InvalidKeyPair.NotFound" and "nope" in missing.message
    bad = env.refused("alice", "DescribeKeyPairs", Filters=[{"Name": "color", "Values": ["x"]}])
    assert bad.code == "InvalidParameterValue"
    wrong = [{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b"}]}]
    refused = env.refused("alice", "CreateKeyPair", KeyName="z", TagSpecifications=wrong)
    assert refused.code == "InvalidParameterValue"


def test_delete_key_pair_by_name_or_id_and_unknown_names_succeed(env: Env) -> None:
    a = env.call("alice", "CreateKeyPair", KeyName="a", KeyType="ed25519")
    env.call("alice", "CreateKeyPair", KeyName="b", KeyType="ed25519")
    deleted = env.call("alice", "DeleteKeyPair", KeyName="a")
    assert (deleted["Return"], deleted["KeyPairId"]) == (True, a["KeyPairId"])
    [b] = env.call("alice", "DescribeKeyPairs")["KeyPairs"]
    deleted = env.call("alice", "DeleteKeyPair", KeyPairId=b["KeyPairId"])
    assert deleted["KeyPairId"] == b["KeyPairId"]
    unknown = env.call("alice", "DeleteKeyPair", KeyName="never")
    assert unknown["Return"] is True and "KeyPairId" not in unknown
    assert env.refused("alice", "DeleteKeyPair").code == "MissingParameter"
    assert env.call("alice", "DescribeKeyPairs")["KeyPairs"] == []


def test_run_instances_with_a_key_pair_keeps_its_name_and_public_key(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def room(*_: Any) -> int:
        return 4

    monkeypatch.setattr(env.service.instances, "room", room)
    ami = image_id("base.qcow2")
    missing = env.refused(
        "alice", "RunInstances", ImageId=ami, MinCount=1, MaxCount=1, KeyName="nope"
    )
    assert missing.code == "InvalidKeyPair.NotFound" and "nope" in missing.message
    env.call("bob", "CreateKeyPair", KeyName="bobs", KeyType="ed25519")
    others = env.refused(
        "alice", "RunInstances", ImageId=ami, MinCount=1, MaxCount=1, KeyName="bobs"
    )
    assert others.code == "InvalidKeyPair.NotFound"
    env.call("alice", "CreateKeyPair", KeyName="mine", KeyType="ed25519")
    [inst] = env.call("alice", "RunInstances", ImageId=ami, MinCount=1, MaxCount=1, KeyName="mine")[
        "Instances"
    ]
    assert inst["KeyName"] == "mine"
    [stored] = env.run(env.service.instances.find(env.users["alice"], InstanceQuery()))
    [pair] = env.call("alice", "DescribeKeyPairs", IncludePublicKey=True)["KeyPairs"]
    assert stored.hints["__ec2.key"] == "mine"
    assert stored.hints["__ec2.pubkey"] == pair["PublicKey"]
    found = env.call(
        "alice", "DescribeInstances", Filters=[{"Name": "key-name", "Values": ["mine"]}]
    )["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [inst["InstanceId"]]


# -- tags -----------------------------------------------------------------------------------


def tags_of(env: Env, who: str, **params: Any) -> list[tuple[str, str, str, str]]:
    found = env.call(who, "DescribeTags", **params)["Tags"]
    return [(t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in found]


def test_instance_tags_are_made_changed_shown_and_removed(env: Env) -> None:
    inst = env.instance("alice")
    iid = instance_id(inst.id)
    env.call("alice", "CreateTags", Resources=[iid], Tags=[{"Key": "Name", "Value": "web"}])
    changed = [{"Key": "Name", "Value": "web 2"}, {"Key": "empty"}]  # no Value: ""
    env.call("alice", "CreateTags", Resources=[iid], Tags=changed)
    assert tags_of(env, "alice") == [
        (iid, "instance", "Name", "web 2"),
        (iid, "instance", "empty", ""),
    ]
    [res] = env.call(
        "alice", "DescribeInstances", Filters=[{"Name": "tag:Name", "Values": ["web*"]}]
    )["Reservations"]
    assert res["Instances"][0]["Tags"] == [
        {"Key": "Name", "Value": "web 2"},
        {"Key": "empty", "Value": ""},
    ]
    assert tags_of(env, "bob") == []
    assert tags_of(env, "root") == tags_of(env, "alice")  # an administrator sees all
    env.call("alice", "DeleteTags", Resources=[iid], Tags=[{"Key": "Name", "Value": "other"}])
    assert len(tags_of(env, "alice")) == 2  # only with that value
    env.call("alice", "DeleteTags", Resources=[iid], Tags=[{"Key": "Name", "Value": ""}])
    assert len(tags_of(env, "alice")) == 2  # "" removes an empty value only
    env.call("alice", "DeleteTags", Resources=[iid], Tags=[{"Key": "empty", "Value": ""}])
    env.call("alice", "DeleteTags", Resources=[iid], Tags=[{"Key": "Name"}])  # any value
    assert tags_of(env, "alice") == []
    env.call(
        "alice", "CreateTags", Resources=[iid], Tags=[{"Key": "a", "Value": "1"}, {"Key": "b"}]
    )
    env.call("alice", "DeleteTags", Resources=[iid])  # no Tags: all of them
    assert tags_of(env, "alice") == []
    after = env.run(env.service.instances.get(env.users["alice"], str(inst.id)))
    assert after.state is inst.state and after.hints == inst.hints


def test_others_instances_and_bad_ids_are_refused_as_aws_does(env: Env) -> None:
    alices = instance_id(env.instance("alice").id)
    tag = [{"Key": "k", "Value": "v"}]
    assert env.refused("bob", "CreateTags", Resources=[alices], Tags=tag).code == (
        "InvalidInstanceID.NotFound"
    )
    assert env.refused("bob", "DeleteTags", Resources=[alices]).code == "InvalidInstanceID.NotFound"
    for bad in ("i-xyz", "subnet-0123456789abcdef0", "whatever"):
        assert env.refused("alice", "CreateTags", Resources=[bad], Tags=tag).code == "InvalidID"
    missing = env.refused("alice", "CreateTags", Resources=["sg-0123456789abcdef0"], Tags=tag)
    assert missing.code == "InvalidGroup.NotFound"  # security groups are tagged too
    missing = env.refused("alice", "CreateTags", Resources=["ami-0123456789abcdef0"], Tags=tag)
    assert missing.code == "InvalidAMIID.NotFound"
    missing = env.refused("alice", "CreateTags", Resources=["key-0123456789abcdef0"], Tags=tag)
    assert missing.code == "InvalidKeyPair.NotFound"
    # one unknown resource and none is tagged
    both = [alices, "i-00000000000000999"]
    assert env.refused("alice", "CreateTags", Resources=both, Tags=tag).code == (
        "InvalidInstanceID.NotFound"
    )
    assert tags_of(env, "alice") == []
    env.call("root", "CreateTags", Resources=[alices], Tags=tag)  # an administrator may
    assert tags_of(env, "alice") == [(alices, "instance", "k", "v")]


def test_aws_tag_rules(env: Env) -> None:
    iid = instance_id(env.instance("alice").id)

    def code(tags: list[dict[str, str]]) -> str:
        return env.refused("alice", "CreateTags", Resources=[iid], Tags=tags).code

    assert code([{"Key": "aws:name", "Value": "x"}]) == "InvalidParameterValue"
    assert code([{"Key": "k" * 129, "Value": "x"}]) == "InvalidParameterValue"
    assert code([{"Key": "k", "Value": "v" * 257}]) == "InvalidParameterValue"
    assert code([{"Key": f"k{n}", "Value": ""} for n in range(51)]) == "TagLimitExceeded"
    env.call("alice", "CreateTags", Resources=[iid], Tags=[{"Key": "k" * 128, "Value": "v" * 256}])
    many = [{"Key": f"k{n}", "Value": ""} for n in range(49)]
    env.call("alice", "CreateTags", Resources=[iid], Tags=many)  # 50 in all
    assert code([{"Key": "one-more", "Value": ""}]) == "TagLimitExceeded"
    env.call("alice", "CreateTags", Resources=[iid], Tags=[{"Key": "k0", "Value": "changed"}])
    aws = env.refused("alice", "DeleteTags", Resources=[iid], Tags=[{"Key": "aws:x"}])
    assert aws.code == "InvalidParameterValue"
    assert len(tags_of(env, "alice")) == 50


def test_image_tags_are_admins_to_set_and_everyones_to_see(env: Env) -> None:
    ami = image_id("base.qcow2")
    refused = env.refused(
        "alice", "CreateTags", Resources=[ami], Tags=[{"Key": "os", "Value": "x"}]
    )
    assert refused.code == "UnauthorizedOperation" and "admin" in refused.message
    env.call("root", "CreateTags", Resources=[ami], Tags=[{"Key": "os", "Value": "debian"}])
    assert tags_of(env, "bob") == [(ami, "image", "os", "debian")]
    [image] = env.call("bob", "DescribeImages", ImageIds=[ami])["Images"]
    assert image["Tags"] == [{"Key": "os", "Value": "debian"}]
    assert env.refused("alice", "DeleteTags", Resources=[ami]).code == "UnauthorizedOperation"
    env.call("root", "DeleteTags", Resources=[ami], Tags=[{"Key": "os"}])
    assert tags_of(env, "bob") == []


def test_key_pair_tags(env: Env) -> None:
    pair = env.call("alice", "CreateKeyPair", KeyName="k", KeyType="ed25519")["KeyPairId"]
    env.call("alice", "CreateTags", Resources=[pair], Tags=[{"Key": "team", "Value": "a"}])
    assert tags_of(env, "alice") == [(pair, "key-pair", "team", "a")]
    tag = [{"Key": "x", "Value": "y"}]
    assert env.refused("bob", "CreateTags", Resources=[pair], Tags=tag).code == (
        "InvalidKeyPair.NotFound"
    )
    env.call("alice", "DeleteKeyPair", KeyName="k")
    assert tags_of(env, "alice") == []


def test_describe_tags_filters_and_pages(env: Env) -> None:
    ami = image_id("base.qcow2")
    iids = [instance_id(env.instance("alice").id) for _ in range(3)]
    for n, iid in enumerate(iids):
        tags = [{"Key": "n", "Value": str(n)}, {"Key": "role", "Value": "web"}]
        env.call("alice", "CreateTags", Resources=[iid], Tags=tags)
    env.call("root", "CreateTags", Resources=[ami], Tags=[{"Key": "role", "Value": "base"}])
    every = tags_of(env, "alice")
    assert len(every) == 7
    by = {
        "resource-type": (["image"], [(ami, "image", "role", "base")]),
        "resource-id": (
            [iids[1]],
            [(iids[1], "instance", "n", "1"), (iids[1], "instance", "role", "web")],
        ),
        "key": (["n"], [(i, "instance", "n", str(n)) for n, i in enumerate(iids)]),
        "value": (["b*"], [(ami, "image", "role", "base")]),
        "tag:n": (["2"], [(iids[2], "instance", "n", "2")]),
    }
    for name, (values, expected) in by.items():
        assert tags_of(env, "alice", Filters=[{"Name": name, "Values": values}]) == expected, name
    pages: list[tuple[str, str, str, str]] = []
    token: dict[str, str] = {}
    while True:
        answer = env.call("alice", "DescribeTags", MaxResults=5, **token)
        pages += [
            (t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in answer["Tags"]
        ]
        if "NextToken" not in answer:
            break
        token = {"NextToken": answer["NextToken"]}
    assert pages == every
    assert env.refused("alice", "DescribeTags", MaxResults=2).code == "InvalidParameterValue"
    assert env.refused("alice", "DescribeTags", NextToken="forged").code == "InvalidNextToken"
