"""Outbound security-group rules through the EC2 actions, in process, on the memory and SQLite
stores (``test_security_groups.py``'s way): AuthorizeSecurityGroupEgress and
RevokeSecurityGroupEgress, AWS's default outbound rule on every new group, what
DescribeSecurityGroups shows and filters, and the refusals.

What the hosts are sent is ``tests/clustermanager/test_secgroups.py``; packets on real taps
``tests/nodemanager/secgroups/test_kernel.py``; the live cluster
``test_live_security_groups.py``.
"""

# ruff: noqa: F811  (``env`` is the fixture of test_keys_tags.py, imported, and the parameter)

from __future__ import annotations

from typing import Any

from tashi.frontends.ec2.ids import account
from tests.ec2.test_keys_tags import Env, env  # noqa: F401  (the same fixture: both stores)
from tests.ec2.test_security_groups import groups, make, perm

ALL_OUT = {
    "IpProtocol": "-1",
    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
    "Ipv6Ranges": [],
    "PrefixListIds": [],
    "UserIdGroupPairs": [],
}


def egress(env: Env, who: str, action: str, group: str, *perms: dict[str, Any]) -> Any:
    return env.call(who, f"{action}SecurityGroupEgress", GroupId=group, IpPermissions=list(perms))


def test_a_new_group_lets_everything_out_until_its_rule_is_revoked(env: Env) -> None:
    web = make(env, "alice", "web")
    shown = groups(env, "alice")
    assert shown["web"]["IpPermissionsEgress"] == [ALL_OUT]
    assert shown["default"]["IpPermissionsEgress"] == [ALL_OUT]
    assert shown["web"]["IpPermissions"] == []
    everything = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    done = egress(env, "alice", "Revoke", web, everything)
    assert done["Return"] is True
    [revoked] = done["RevokedSecurityGroupRules"]
    assert revoked["IsEgress"] is True and revoked["CidrIpv4"] == "0.0.0.0/0"
    assert groups(env, "alice")["web"]["IpPermissionsEgress"] == []
    refused = env.refused("alice", "RevokeSecurityGroupEgress", GroupId=web,
                          IpPermissions=[everything])  # fmt: skip
    assert refused.code == "InvalidPermission.NotFound"


def test_outbound_rules_are_authorized_shown_filtered_and_revoked_by_id(env: Env) -> None:
    web, db = make(env, "alice", "web"), make(env, "alice", "db")
    owner = account(env.users["alice"].user_id)
    to_db = {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
             "UserIdGroupPairs": [{"GroupId": db, "Description": "the database"}]}  # fmt: skip
    added = egress(env, "alice", "Authorize", web, perm("udp", 53, 53, "198.18.1.1/32"), to_db)
    rules = added["SecurityGroupRules"]
    assert [(r["IsEgress"], r["IpProtocol"], r["FromPort"]) for r in rules] == [
        (True, "udp", 53),
        (True, "tcp", 5432),
    ]
    assert rules[1]["ReferencedGroupInfo"] == {"GroupId": db, "UserId": owner}
    shown = groups(env, "alice")["web"]["IpPermissionsEgress"]
    assert shown[0] == ALL_OUT
    assert shown[2]["UserIdGroupPairs"] == [
        {"GroupId": db, "GroupName": "db", "UserId": owner, "Description": "the database"}
    ]
    assert groups(env, "alice")["web"]["IpPermissions"] == []  # inbound untouched
    by = {
        "egress.ip-permission.to-port": "5432",
        "egress.ip-permission.group-id": db,
        "egress.ip-permission.cidr": "198.18.1.1/32",
        "egress.ip-permission.protocol": "udp",
    }
    for name, value in by.items():
        found = groups(env, "alice", Filters=[{"Name": name, "Values": [value]}])
        assert list(found) == ["web"], name
    found = groups(env, "alice", Filters=[{"Name": "ip-permission.to-port", "Values": ["5432"]}])
    assert found == {}  # an outbound rule is not an inbound one
    refused = env.refused("alice", "RevokeSecurityGroupIngress", GroupId=web,
                          SecurityGroupRuleIds=[rules[0]["SecurityGroupRuleId"]])  # fmt: skip
    assert refused.code == "InvalidSecurityGroupRuleId.NotFound"
    done = env.call(
        "alice",
        "RevokeSecurityGroupEgress",
        GroupId=web,
        SecurityGroupRuleIds=[r["SecurityGroupRuleId"] for r in rules],
    )
    assert [r["IpProtocol"] for r in done["RevokedSecurityGroupRules"]] == ["udp", "tcp"]
    assert groups(env, "alice")["web"]["IpPermissionsEgress"] == [ALL_OUT]


def test_bad_outbound_rules_are_refused(env: Env) -> None:
    web = make(env, "alice", "web")
    refused = env.refused("alice", "AuthorizeSecurityGroupEgress", GroupId=web,
                          IpPermissions=[ALL_OUT])  # fmt: skip
    assert refused.code == "InvalidPermission.Duplicate"  # every group has it
    flat = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "10.0.0.0/8"}
    refused = env.refused("alice", "AuthorizeSecurityGroupEgress", GroupId=web, **flat)
    assert refused.code == "InvalidParameterValue" and "IpPermissions" in refused.message
    nowhere = {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2}
    refused = env.refused("alice", "AuthorizeSecurityGroupEgress", GroupId=web,
                          IpPermissions=[nowhere])  # fmt: skip
    assert refused.code == "InvalidParameterValue" and "destination" in refused.message
    theirs = make(env, "bob", "theirs")
    pair = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": theirs}]}
    refused = env.refused("alice", "AuthorizeSecurityGroupEgress", GroupId=web,
                          IpPermissions=[pair])  # fmt: skip
    assert refused.code == "InvalidGroup.NotFound"
    refused = env.refused("bob", "AuthorizeSecurityGroupEgress", GroupId=web,
                          IpPermissions=[perm("tcp", 22, 22)])  # fmt: skip
    assert refused.code == "InvalidGroup.NotFound"
    many = [perm("tcp", p, p) for p in range(1, 61)]  # 60 more, beside the default one
    refused = env.refused("alice", "AuthorizeSecurityGroupEgress", GroupId=web,
                          IpPermissions=many)  # fmt: skip
    assert refused.code == "RulesPerSecurityGroupLimitExceeded"
    assert groups(env, "alice")["web"]["IpPermissionsEgress"] == [ALL_OUT]  # all or nothing
