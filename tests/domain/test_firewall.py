"""The host policy of security groups (``domain/firewall.py``) with outbound rules: which groups
``resolve`` puts in ``egress`` (those that do not let everything out), that a policy without
any is what it was before outbound rules (its version too), and that the node's file and the
node contract's wire carry both parts back unchanged."""

from __future__ import annotations

import hashlib
import json

from tashi.domain import firewall
from tashi.domain.firewall import Allow, Policy
from tashi.domain.secgroups import DEFAULT_EGRESS, Rule
from tashi.nodeapi import firewall as wire

WEB, DB, GONE = "7:sg-0123456789abcdef0", "7:sg-0123456789abcdef1", "7:sg-0123456789abcdef2"
SSH = Rule("tcp", 22, 22, cidr="10.0.0.0/8")


def test_only_groups_that_narrow_what_goes_out_are_in_egress() -> None:
    rules = {
        WEB: [SSH, DEFAULT_EGRESS],  # AWS's default: everything out
        DB: [Rule("tcp", 5432, 5432, peer="sg-0123456789abcdef0", egress=True)],
    }
    members = {"sg-0123456789abcdef0": ["198.18.1.10", "198.18.1.11"]}
    policy = firewall.resolve(rules, members, [WEB, DB, GONE])
    assert policy.groups == {WEB: (Allow("tcp", 22, 22, ("10.0.0.0/8",)),), DB: (), GONE: ()}
    to_web = Allow("tcp", 5432, 5432, ("198.18.1.10/32", "198.18.1.11/32"))
    assert policy.egress == {DB: (to_web,)}  # an unknown group (GONE) is not narrowed either
    emptied = firewall.resolve({WEB: [SSH]}, {}, [WEB])
    assert emptied.egress == {WEB: ()}  # default revoked, nothing else: nothing goes out


def test_a_policy_without_egress_has_the_version_it_had_before() -> None:
    policy = Policy({WEB: (Allow("tcp", 22, 22, ("10.0.0.0/8",)),)})
    before = json.dumps(firewall.as_data(policy), sort_keys=True, separators=(",", ":"))
    assert policy.version == hashlib.sha256(before.encode()).hexdigest()[:24]
    narrowed = Policy(policy.groups, {WEB: ()})
    assert narrowed.version != policy.version


def test_both_parts_go_through_the_nodes_file_and_the_wire() -> None:
    policy = Policy(
        {WEB: (Allow("icmp", 8, -1, ("10.0.0.0/8",)),), DB: ()},
        {DB: (Allow("udp", 53, 53, ("198.18.1.1/32",)),)},
    )
    data = json.loads(json.dumps([firewall.as_data(policy), firewall.as_data(policy, egress=True)]))
    assert firewall.from_data(*data) == policy
    assert firewall.from_data(data[0]) == Policy(policy.groups)  # a file of before
    sent = wire.policy_wire(policy)
    assert sent.version == policy.version
    assert wire.policy(wire.FirewallIn.model_validate_json(sent.model_dump_json())) == policy
    old = wire.FirewallIn.model_validate({"version": "v", "groups": {}})  # a sender of before
    assert wire.policy(old) == Policy()
