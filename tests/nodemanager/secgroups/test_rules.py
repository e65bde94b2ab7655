"""The nftables text of security groups (``nodemanager/secgroups/rules.py``), pure: what each
kind of rule becomes, the chains a port has and what they check, and the transactions that
make, change and remove them. ``test_kernel.py`` loads the same text into a kernel."""

from __future__ import annotations

import pytest

from tashi.domain.firewall import Allow, Policy
from tashi.nodemanager.secgroups import rules
from tashi.nodemanager.secgroups.rules import Port

WEB = "7:sg-0123456789abcdef0"
DB = "7:sg-0123456789abcdef1"
PORT = Port(42, 0, "tashi42.0", "52:54:00:AA:00:2A", "198.18.1.42", (WEB, DB))


def test_each_kind_of_rule() -> None:
    assert rules.allows(
        [
            Allow("tcp", 22, 22, ("10.0.0.0/8",)),
            Allow("tcp", 80, 443, ("0.0.0.0/0",)),
            Allow("udp", 0, 65535, ("198.18.1.10/32", "198.18.1.11/32")),
            Allow("icmp", 8, -1, ("10.0.0.0/8",)),
            Allow("icmp", 3, 4, ("10.0.0.0/8",)),
            Allow("icmp", -1, -1, ("10.0.0.0/8",)),
            Allow("-1", -1, -1, ("10.1.0.0/16", "10.0.0.0/8", "10.1.2.3/32")),
            Allow("-1", -1, -1, ("0.0.0.0/0",)),
            Allow("47", -1, -1, ("192.0.2.0/24",)),
            Allow("tcp", 5432, 5432, ()),  # a group with no members yet: nothing
        ]
    ) == [
        "ip saddr { 10.0.0.0/8 } tcp dport 22",
        "tcp dport 80-443",
        "ip saddr { 198.18.1.10/31 } ip protocol udp",
        "ip saddr { 10.0.0.0/8 } ip protocol icmp icmp type 8",
        "ip saddr { 10.0.0.0/8 } ip protocol icmp icmp type 3 icmp code 4",
        "ip saddr { 10.0.0.0/8 } ip protocol icmp",
        "ip saddr { 10.0.0.0/8 }",  # overlapping ranges merged
        "ether type ip",
        "ip saddr { 192.0.2.0/24 } ip protocol 47",
    ]
    with pytest.raises(ValueError, match="protocol"):
        rules.allows([Allow("gre; flush ruleset", -1, -1, ("10.0.0.0/8",))])
    with pytest.raises(ValueError, match="ruleset"):
        rules.allows([Allow("tcp", 1, 2, ("10.0.0.0/8 } ; flush ruleset",))])


def test_a_port_drops_what_no_group_allows_and_what_its_guest_may_not_send() -> None:
    text = rules.add_port(Policy({WEB: (Allow("tcp", 22, 22, ("10.0.0.0/8",)),)}), PORT, [WEB])
    where = "netdev tashi-secgroups"
    assert f"add chain {where} g-7-sg-0123456789abcdef0" in text
    assert (
        f"add rule {where} g-7-sg-0123456789abcdef0 ip saddr {{ 10.0.0.0/8 }} tcp dport 22 accept"
        in text
    )
    assert "g-7-sg-0123456789abcdef1" in text  # jumped to; made by an earlier port
    assert (
        f'add chain {where} to-42-0 {{ type filter hook egress device "tashi42.0" priority 0;'
        " policy drop; }" in text
    )
    egress = [line.split(" to-42-0 ", 1)[1] for line in text.splitlines() if " to-42-0 " in line]
    assert egress[1:] == [
        "meta mark and 0x80000000 == 0x80000000 accept",
        "meta mark and 0xffff0000 == 0x74610000 accept",
        "ether type arp accept",
        "udp sport 67 udp dport 68 accept",
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept",
        "jump g-7-sg-0123456789abcdef0",
        "jump g-7-sg-0123456789abcdef1",
    ]
    lines = text.splitlines()
    ingress = [line.split(" from-42-0 ", 1)[1] for line in lines if " from-42-0 " in line]
    assert ingress == [
        '{ type filter hook ingress device "tashi42.0" priority -400; policy accept; }',
        "ether saddr != 52:54:00:aa:00:2a drop",
        "arp saddr ether != 52:54:00:aa:00:2a drop",
        "udp sport 67 udp dport 68 drop",
        "arp saddr ip != { 198.18.1.42, 0.0.0.0 } drop",
        "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
        "ether type ip ip saddr != 198.18.1.42 drop",
        "udp sport 68 udp dport 67 accept",
        "jump e-7-sg-0123456789abcdef0",
        "jump e-7-sg-0123456789abcdef1",
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept",
        "ether type ip6 drop",
        "ether type ip meta mark set meta mark | 0x800000",
    ]
    # neither group restricts what goes out: its chain lets everything out
    assert f"add rule {where} e-7-sg-0123456789abcdef0 accept" in lines


def test_a_guest_with_no_address_yet_is_held_to_its_mac_only() -> None:
    text = rules.add_port(Policy(), Port(1, 0, "tp1", "52:54:00:00:00:01", None, (WEB,)), [])
    assert "ether saddr != 52:54:00:00:00:01 drop" in text
    assert "ip saddr !=" not in text and "arp saddr ip" not in text


def test_names_that_cannot_be_quoted_or_keys_that_name_no_group() -> None:
    for tap in ('tap"0', "a" * 16, "t p;x"):
        with pytest.raises(ValueError, match="cannot be named"):
            rules.add_port(Policy(), Port(1, 0, tap, "52:54:00:00:00:01", None, (WEB,)), [])
    with pytest.raises(ValueError, match="not a MAC"):
        rules.add_port(Policy(), Port(1, 0, "tp1", "52:54:00:00:00", None, (WEB,)), [])
    assert rules.group_chain("7:sg-0123456789abcdef0") == "g-7-sg-0123456789abcdef0"
    for key in (
        "sg-0123456789abcdef0",
        "7:web",
        "7:sg-0123; flush ruleset",
        "x:sg-0123456789abcdef0",
    ):
        assert rules.group_chain(key) is None
    odd = Port(1, 0, "tp1", "52:54:00:00:00:01", None, ("7:web",))
    assert "jump" not in rules.add_port(Policy(), odd, ["7:web"])  # closed: no group, no rule


def test_transactions_reset_update_and_remove() -> None:
    policy = Policy({WEB: (Allow("tcp", 22, 22, ("10.0.0.0/8",)),), DB: ()})
    reset = rules.reset(policy, [PORT]).splitlines()
    assert reset[:4] == [
        "add table netdev tashi-secgroups",
        "delete table netdev tashi-secgroups",
        "add table inet tashi-secgroups",
        "delete table inet tashi-secgroups",
    ]
    assert (
        'add rule inet tashi-secgroups track_forward meta oifkind "bridge" ct state'
        " established,related meta mark set meta mark | 0x80000000" in reset
    )
    assert rules.needed(policy, [PORT]) == {WEB, DB}
    changed = rules.update(Policy({WEB: ()}), {WEB}, {DB}).splitlines()
    assert changed == [
        "add chain netdev tashi-secgroups g-7-sg-0123456789abcdef0",
        "flush chain netdev tashi-secgroups g-7-sg-0123456789abcdef0",
        "add chain netdev tashi-secgroups e-7-sg-0123456789abcdef0",
        "flush chain netdev tashi-secgroups e-7-sg-0123456789abcdef0",
        "add rule netdev tashi-secgroups e-7-sg-0123456789abcdef0 accept",
        "flush chain netdev tashi-secgroups g-7-sg-0123456789abcdef1",
        "delete chain netdev tashi-secgroups g-7-sg-0123456789abcdef1",
        "flush chain netdev tashi-secgroups e-7-sg-0123456789abcdef1",
        "delete chain netdev tashi-secgroups e-7-sg-0123456789abcdef1",
    ]
    gone = rules.remove_port(PORT, {WEB}).splitlines()
    assert gone == [
        "flush chain netdev tashi-secgroups to-42-0",
        "delete chain netdev tashi-secgroups to-42-0",
        "flush chain netdev tashi-secgroups from-42-0",
        "delete chain netdev tashi-secgroups from-42-0",
        "flush chain netdev tashi-secgroups g-7-sg-0123456789abcdef0",
        "delete chain netdev tashi-secgroups g-7-sg-0123456789abcdef0",
        "flush chain netdev tashi-secgroups e-7-sg-0123456789abcdef0",
        "delete chain netdev tashi-secgroups e-7-sg-0123456789abcdef0",
    ]


def test_outbound_rules_match_destinations_and_what_they_do_not_let_out_is_marked() -> None:
    assert rules.allows(
        [
            Allow("tcp", 443, 443, ("10.0.0.0/8", "192.0.2.7/32")),
            Allow("udp", 53, 53, ("198.18.1.1/32",)),
            Allow("icmp", 8, -1, ("0.0.0.0/0",)),
            Allow("-1", -1, -1, ("198.18.1.10/32",)),
            Allow("tcp", 5432, 5432, ()),  # a destination group with no members: nothing
        ],
        egress=True,
    ) == [
        "ip daddr { 10.0.0.0/8, 192.0.2.7/32 } tcp dport 443",
        "ip daddr { 198.18.1.1/32 } udp dport 53",
        "ip protocol icmp icmp type 8",
        "ip daddr { 198.18.1.10/32 }",
    ]
    policy = Policy(
        {WEB: (), DB: ()}, egress={WEB: (Allow("tcp", 443, 443, ("10.0.0.0/8",)),), DB: ()}
    )
    made = rules.update(policy, {WEB, DB}, ()).splitlines()
    where = "netdev tashi-secgroups"
    web = [
        line.split(" e-7-sg-0123456789abcdef0 ", 1)[1]
        for line in made
        if " e-7-sg-0123456789abcdef0 " in line
    ]
    assert web == ["ip daddr { 10.0.0.0/8 } tcp dport 443 accept"]
    assert f"add chain {where} e-7-sg-0123456789abcdef1" in made  # lets nothing out: empty
    assert not [
        line for line in made if line.startswith(f"add rule {where} e-7-sg-0123456789abcdef1")
    ]
    tables = rules.tables().splitlines()
    unasked = "meta mark and 0x800000 == 0x800000 ct state new,invalid,untracked drop"
    assert f"add rule inet tashi-secgroups track_forward {unasked}" in tables
    assert f"add rule inet tashi-secgroups guard_input {unasked}" in tables
    assert not any("track_output" in line and "0x800000 ==" in line for line in tables)


def test_a_group_the_policy_does_not_know_yet_lets_nothing_in_or_out_but_replies() -> None:
    # A VM started before its host's policy came (ADR 0019): its group's chains stay empty.
    chains = ("g-7-sg-0123456789abcdef0", "e-7-sg-0123456789abcdef0")
    early = rules.add_port(Policy(), PORT, [WEB]).splitlines()
    assert [line for line in early if line.split()[4] in chains] == [
        f"{verb} chain netdev tashi-secgroups {c}" for c in chains for verb in ("add", "flush")
    ]
    known = rules.update(Policy({WEB: ()}), {WEB}, ()).splitlines()
    assert f"add rule netdev tashi-secgroups {chains[1]} accept" in known  # AWS's default out
