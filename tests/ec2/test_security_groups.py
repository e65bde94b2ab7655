"""Security groups through the EC2 actions, in process, on the memory and SQLite stores: each
request is written by botocore's own serializer, read by ``protocol.parse``, answered by the
action and read back by botocore's parser, so the shapes are boto3's (``test_keys_tags.Env``).

What the hosts are sent (the policies) is ``tests/clustermanager/test_secgroups.py``; packets
on real taps ``tests/nodemanager/secgroups``; the live cluster ``test_live_security_groups.py``.
"""

# ruff: noqa: F811  (``env`` is the fixture of test_keys_tags.py, imported, and the parameter)

from __future__ import annotations

from typing import Any

import pytest

from tashi.domain.operations import InstanceQuery
from tashi.frontends.ec2.ids import account, image_id
from tests.ec2.test_keys_tags import Env, env  # noqa: F401  (the same fixture: both stores)

AMI = image_id("base.qcow2")


def groups(env: Env, who: str, **params: Any) -> dict[str, dict[str, Any]]:
    found = env.call(who, "DescribeSecurityGroups", **params)["SecurityGroups"]
    return {g["GroupName"]: g for g in found}


def make(env: Env, who: str, name: str, description: str = "a group") -> str:
    made = env.call(who, "CreateSecurityGroup", GroupName=name, Description=description)
    return str(made["GroupId"])


def perm(proto: str, low: int | None, high: int | None, cidr: str = "10.0.0.0/8") -> dict[str, Any]:
    out: dict[str, Any] = {"IpProtocol": proto, "IpRanges": [{"CidrIp": cidr}]}
    if low is not None:
        out["FromPort"] = low
    if high is not None:
        out["ToPort"] = high
    return out


def ssh(cidr: str = "10.0.0.0/8") -> dict[str, Any]:
    return perm("tcp", 22, 22, cidr)


def test_every_user_has_a_default_group_that_lets_its_own_members_in(env: Env) -> None:
    found = groups(env, "alice")
    assert list(found) == ["default"]
    default = found["default"]
    assert default["GroupId"].startswith("sg-") and len(default["GroupId"]) == 20
    assert default["OwnerId"] == account(env.users["alice"].user_id)
    assert default["IpPermissions"] == [
        {
            "IpProtocol": "-1",
            "IpRanges": [],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
            "UserIdGroupPairs": [
                {
                    "GroupId": default["GroupId"],
                    "GroupName": "default",
                    "UserId": account(env.users["alice"].user_id),
                }
            ],
        }
    ]
    assert default["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    assert groups(env, "alice")["default"]["GroupId"] == default["GroupId"]  # made once
    assert groups(env, "bob")["default"]["GroupId"] != default["GroupId"]  # one each
    refused = env.refused("alice", "DeleteSecurityGroup", GroupName="default")
    assert refused.code == "CannotDelete"
    refused = env.refused("alice", "CreateSecurityGroup", GroupName="default", Description="x")
    assert refused.code == "InvalidGroup.Reserved"


def test_names_are_unique_per_user_and_groups_private_to_it(env: Env) -> None:
    web = make(env, "alice", "web", "Web servers")
    made = env.call(
        "alice",
        "CreateSecurityGroup",
        GroupName="db",
        Description="databases",
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "team", "Value": "data"}]}
        ],
    )
    assert made["Tags"] == [{"Key": "team", "Value": "data"}]
    assert made["SecurityGroupArn"].endswith(f":security-group/{made['GroupId']}")
    assert env.refused("alice", "CreateSecurityGroup", GroupName="web", Description="x").code == (
        "InvalidGroup.Duplicate"
    )
    assert make(env, "bob", "web") != web  # another user may use the name
    for bad in ("sg-web", "", "x" * 256, "ünicode"):
        refused = env.refused("alice", "CreateSecurityGroup", GroupName=bad, Description="x")
        assert refused.code in ("InvalidParameterValue", "MissingParameter"), bad
    assert set(groups(env, "alice")) == {"default", "web", "db"}
    assert groups(env, "alice", GroupIds=[web])["web"]["Description"] == "Web servers"
    assert list(groups(env, "alice", GroupNames=["db"])) == ["db"]
    refused = env.refused("bob", "DescribeSecurityGroups", GroupIds=[web])
    assert refused.code == "InvalidGroup.NotFound" and web in refused.message
    refused = env.refused("alice", "DescribeSecurityGroups", GroupIds=["sg-nope"])
    assert refused.code == "InvalidGroupId.Malformed"
    assert env.refused("bob", "DeleteSecurityGroup", GroupId=web).code == "InvalidGroup.NotFound"
    refused = env.refused(
        "alice", "CreateSecurityGroup", GroupName="v", Description="x", VpcId="vpc-1"
    )
    assert refused.code == "InvalidVpcID.NotFound"


def test_rules_are_authorized_shown_and_revoked(env: Env) -> None:
    web, db = make(env, "alice", "web"), make(env, "alice", "db")
    done = env.call(
        "alice",
        "AuthorizeSecurityGroupIngress",
        GroupId=web,
        IpPermissions=[
            {**ssh(), "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "office"}]},
            perm("tcp", 80, 443, "0.0.0.0/0"),
            perm("icmp", 8, -1, "198.18.0.0/15"),
        ],
    )
    assert done["Return"] is True
    assert [r["SecurityGroupRuleId"][:4] for r in done["SecurityGroupRules"]] == ["sgr-"] * 3
    env.call(
        "alice",
        "AuthorizeSecurityGroupIngress",
        GroupName="db",
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
             "UserIdGroupPairs": [{"GroupId": web, "Description": "the web tier"}]},
        ],
    )  # fmt: skip
    env.call(  # the old flat form
        "alice", "AuthorizeSecurityGroupIngress", GroupId=db, CidrIp="10.1.0.0/16",
        IpProtocol="udp", FromPort=53, ToPort=53,
    )  # fmt: skip
    shown = groups(env, "alice")
    web_perms = shown["web"]["IpPermissions"]
    assert [(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")) for p in web_perms] == [
        ("tcp", 22, 22),
        ("tcp", 80, 443),
        ("icmp", 8, -1),
    ]
    assert shown["web"]["IpPermissions"][0]["IpRanges"] == [
        {"CidrIp": "10.0.0.0/8", "Description": "office"}
    ]
    [pair] = shown["db"]["IpPermissions"][0]["UserIdGroupPairs"]
    assert pair == {
        "GroupId": web,
        "GroupName": "web",
        "UserId": account(env.users["alice"].user_id),
        "Description": "the web tier",
    }
    assert shown["db"]["IpPermissions"][1]["IpRanges"] == [{"CidrIp": "10.1.0.0/16"}]
    again = env.refused(
        "alice", "AuthorizeSecurityGroupIngress", GroupId=web, IpPermissions=[ssh()]
    )
    assert again.code == "InvalidPermission.Duplicate"
    assert "peer: 10.0.0.0/8, TCP, from port: 22, to port: 22, ALLOW" in again.message
    env.call("alice", "RevokeSecurityGroupIngress", GroupId=web, IpPermissions=[ssh()])
    gone = env.refused("alice", "RevokeSecurityGroupIngress", GroupId=web, IpPermissions=[ssh()])
    assert gone.code == "InvalidPermission.NotFound"
    [icmp] = [r for r in done["SecurityGroupRules"] if r["IpProtocol"] == "icmp"]
    revoked = env.call(
        "alice",
        "RevokeSecurityGroupIngress",
        GroupId=web,
        SecurityGroupRuleIds=[icmp["SecurityGroupRuleId"]],
    )
    assert revoked["RevokedSecurityGroupRules"][0]["CidrIpv4"] == "198.18.0.0/15"
    left = groups(env, "alice")["web"]["IpPermissions"]
    assert [(p["IpProtocol"], p["FromPort"]) for p in left] == [("tcp", 80)]


def test_bad_rules_are_refused_as_aws_does_and_a_request_is_all_or_nothing(env: Env) -> None:
    web = make(env, "alice", "web")
    other = make(env, "bob", "theirs")
    malformed = "InvalidGroupId.Malformed"
    cases: list[tuple[dict[str, Any], str]] = [
        (perm("tcp", 22, None), "InvalidParameterValue"),
        (perm("tcp", 90, 80), "InvalidParameterValue"),
        (perm("tcp", 1, 70000), "InvalidParameterValue"),
        (perm("gre", None, None), "InvalidParameterValue"),
        ({**ssh("10.0.0.1/8")}, "InvalidParameterValue"),
        ({**ssh("not-a-cidr")}, "InvalidParameterValue"),
        ({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}, "InvalidParameterValue"),
        ({"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}, "InvalidParameterValue"),
        ({"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": other}]}, "InvalidGroup.NotFound"),
        ({"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupName": "no"}]}, "InvalidGroup.NotFound"),
        ({"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-x"}]}, malformed),
    ]  # fmt: skip
    for given, code in cases:
        refused = env.refused(
            "alice", "AuthorizeSecurityGroupIngress", GroupId=web, IpPermissions=[given]
        )
        assert refused.code == code, (given, refused)
    twice = env.refused(
        "alice", "AuthorizeSecurityGroupIngress", GroupId=web,
        IpPermissions=[ssh("10.9.0.0/16"), ssh("10.0.0.0/8"), ssh("10.0.0.0/8")],
    )  # fmt: skip
    assert twice.code == "InvalidPermission.Duplicate"
    assert groups(env, "alice")["web"]["IpPermissions"] == []  # nothing of it was added
    refused = env.refused("alice", "AuthorizeSecurityGroupIngress", GroupId=web)
    assert refused.code == "MissingParameter"
    refused = env.refused(
        "alice", "AuthorizeSecurityGroupIngress", GroupId=web, CidrIp="10.0.0.0/8",
        IpPermissions=[ssh()],
    )  # fmt: skip
    assert refused.code == "InvalidParameterCombination"
    many = [ssh(f"10.{i}.0.0/16") for i in range(61)]
    refused = env.refused("alice", "AuthorizeSecurityGroupIngress", GroupId=web, IpPermissions=many)
    assert refused.code == "RulesPerSecurityGroupLimitExceeded"


def test_describe_filters_and_pages(env: Env) -> None:
    web, db = make(env, "alice", "web", "Web servers"), make(env, "alice", "db", "Databases")
    for i in range(5):
        make(env, "alice", f"extra{i}")
    env.call("alice", "AuthorizeSecurityGroupIngress", GroupId=web, IpPermissions=[ssh()])
    env.call(
        "alice", "AuthorizeSecurityGroupIngress", GroupId=db,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                        "UserIdGroupPairs": [{"GroupId": web}]}],
    )  # fmt: skip

    def named(name: str, *values: str) -> set[str]:
        return set(groups(env, "alice", Filters=[{"Name": name, "Values": list(values)}]))

    assert named("group-name", "web", "db") == {"web", "db"}
    assert named("description", "*servers") == {"web"}
    assert named("ip-permission.cidr", "10.0.0.0/8") == {"web"}
    assert named("ip-permission.from-port", "5432") == {"db"}
    assert named("ip-permission.group-id", web) == {"db"}
    assert named("ip-permission.protocol", "-1") == {"default"}
    assert "default" in named("egress.ip-permission.cidr", "0.0.0.0/0")
    bad = env.refused("alice", "DescribeSecurityGroups", Filters=[{"Name": "vpc", "Values": ["x"]}])
    assert bad.code == "InvalidParameterValue"
    seen: list[str] = []
    token: str | None = None
    while True:
        more = {"NextToken": token} if token else {}
        page = env.call("alice", "DescribeSecurityGroups", MaxResults=5, **more)
        seen += [g["GroupId"] for g in page["SecurityGroups"]]
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == 8 and seen == sorted(seen)


def test_a_group_in_use_or_named_by_a_rule_is_not_deleted(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def room(*_: Any) -> int:
        return 4

    monkeypatch.setattr(env.service.instances, "room", room)
    web, db = make(env, "alice", "web"), make(env, "alice", "db")
    env.call(
        "alice", "AuthorizeSecurityGroupIngress", GroupId=db,
        IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": web}]}],
    )  # fmt: skip
    named = env.refused("alice", "DeleteSecurityGroup", GroupId=web)
    assert named.code == "DependencyViolation"
    [inst] = env.call(
        "alice", "RunInstances", ImageId=AMI, MinCount=1, MaxCount=1, SecurityGroupIds=[db]
    )["Instances"]
    assert inst["SecurityGroups"] == [{"GroupName": "db", "GroupId": db}]
    assert env.refused("alice", "DeleteSecurityGroup", GroupId=db).code == "DependencyViolation"
    env.call("alice", "TerminateInstances", InstanceIds=[inst["InstanceId"]])
    env.call("alice", "DeleteSecurityGroup", GroupId=db)
    gone = env.call("alice", "DeleteSecurityGroup", GroupName="web")
    assert (gone["Return"], gone["GroupId"]) == (True, web)
    assert set(groups(env, "alice")) == {"default"}


def test_run_instances_records_the_groups_it_names_or_default(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def room(*_: Any) -> int:
        return 4

    monkeypatch.setattr(env.service.instances, "room", room)
    web = make(env, "alice", "web")
    theirs = make(env, "bob", "theirs")
    [plain] = env.call("alice", "RunInstances", ImageId=AMI, MinCount=1, MaxCount=1)["Instances"]
    default = groups(env, "alice")["default"]["GroupId"]
    assert plain["SecurityGroups"] == [{"GroupName": "default", "GroupId": default}]
    [named] = env.call(
        "alice", "RunInstances", ImageId=AMI, MinCount=1, MaxCount=1,
        SecurityGroups=["web"], SecurityGroupIds=[default],
    )["Instances"]  # fmt: skip
    assert named["SecurityGroups"] == [
        {"GroupName": "default", "GroupId": default},
        {"GroupName": "web", "GroupId": web},
    ]
    for params, code in (
        ({"SecurityGroupIds": [theirs]}, "InvalidGroup.NotFound"),
        ({"SecurityGroups": ["theirs"]}, "InvalidGroup.NotFound"),
        ({"SecurityGroupIds": ["sg-12"]}, "InvalidGroupId.Malformed"),
    ):
        refused = env.refused(
            "alice", "RunInstances", ImageId=AMI, MinCount=1, MaxCount=1, **params
        )
        assert refused.code == code, params
    found = env.call("alice", "DescribeInstances", InstanceIds=[named["InstanceId"]])[
        "Reservations"
    ][0]["Instances"][0]
    assert found["SecurityGroups"] == named["SecurityGroups"]
    stored = env.run(env.service.instances.find(env.users["alice"], InstanceQuery()))
    assert {i.hints["__ec2.groups"] for i in stored} == {
        f'[["{default}","default"]]',
        f'[["{default}","default"],["{web}","web"]]',
    }


def test_groups_are_tagged_and_found_by_their_tags(env: Env) -> None:
    web = make(env, "alice", "web")
    env.call("alice", "CreateTags", Resources=[web], Tags=[{"Key": "tier", "Value": "front"}])
    shown = groups(env, "alice", Filters=[{"Name": "tag:tier", "Values": ["front"]}])
    assert list(shown) == ["web"] and shown["web"]["Tags"] == [{"Key": "tier", "Value": "front"}]
    found = env.call(
        "alice", "DescribeTags", Filters=[{"Name": "resource-type", "Values": ["security-group"]}]
    )["Tags"]
    assert [(t["ResourceId"], t["Key"]) for t in found] == [(web, "tier")]
    refused = env.refused("bob", "CreateTags", Resources=[web], Tags=[{"Key": "k", "Value": "v"}])
    assert refused.code == "InvalidGroup.NotFound"
    env.call("alice", "DeleteTags", Resources=[web])
    assert groups(env, "alice")["web"]["Tags"] == []
