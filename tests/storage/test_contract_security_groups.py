"""The store contract, continued: users' security groups (``tx.security_groups``, the contract
in ``storage/secgroups.py``) and their tags (``tx.security_group_tags``).

Part of the one contract suite (memory, SQLite, PostgreSQL, MariaDB): a group reads back as it
was added, by id and by its user's name for it; names are unique per user and compare exactly;
rules come back in the order they were added, a duplicate (by key, whatever its description)
is refused and adds nothing of its call; a rule's peer must exist and a group named by another's
rule is not removed; groups go with their user, rules and tags with their group; a failed unit
leaves nothing behind.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound
from tashi.domain.ids import UserId
from tashi.domain.secgroups import Rule, SecurityGroup
from tashi.storage.contract import Store
from tests.storage.test_contract import T0, seed
from tests.storage.test_contract_key_pairs import bob


def group(n: int, user: UserId, name: str = "", description: str = "d") -> SecurityGroup:
    return SecurityGroup(
        id=f"sg-{n:017x}",
        user_id=user,
        name=name or f"group{n}",
        description=description,
        created_at=T0 + timedelta(minutes=n),
    )


SSH = Rule("tcp", 22, 22, cidr="10.0.0.0/8")
WEB = Rule("tcp", 80, 443, cidr="0.0.0.0/0", description="the web")
PING = Rule("icmp", 8, -1, cidr="198.18.0.0/15")


def test_a_group_reads_back_by_id_and_by_name(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.security_groups.add(group(1, alice, "Web Servers", ""))
    with store.transaction(write=False) as tx:
        assert tx.security_groups.get(group(1, alice).id) == group(1, alice, "Web Servers", "")
        assert tx.security_groups.named(alice, "Web Servers") == group(1, alice, "Web Servers", "")
        assert tx.security_groups.named(alice, "web servers") is None  # names compare exactly
        assert tx.security_groups.get("sg-00000000000000099") is None
        assert tx.security_groups.rules() == {}


def test_names_are_unique_per_user_and_users_must_exist(store: Store) -> None:
    alice = seed(store)
    other = bob(store)
    with store.transaction() as tx:
        tx.security_groups.add(group(1, alice, "default"))
        tx.security_groups.add(group(2, other, "default"))  # another user's may share it
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.security_groups.add(group(3, alice, "default"))
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.security_groups.add(group(1, alice, "other"))  # the id
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.security_groups.add(group(4, UserId(9999)))
    with pytest.raises(InvalidInput), store.transaction() as tx:
        tx.security_groups.add(group(5, alice, "x" * 256))
    with pytest.raises(InvalidInput), store.transaction() as tx:
        tx.security_groups.add(group(6, alice, "y", "z" * 256))
    with store.transaction(write=False) as tx:
        assert [g.id for g in tx.security_groups.list()] == [group(1, alice).id, group(2, other).id]
        assert [g.id for g in tx.security_groups.list(other)] == [group(2, other).id]


def test_rules_keep_their_order_and_a_duplicate_adds_nothing(store: Store) -> None:
    alice = seed(store)
    web, db = group(1, alice).id, group(2, alice).id
    from_web = Rule("tcp", 5432, 5432, peer=web)
    with store.transaction() as tx:
        tx.security_groups.add(group(1, alice))
        tx.security_groups.add(group(2, alice))
        tx.security_groups.add_rules(web, [WEB, SSH])
        tx.security_groups.add_rules(web, [PING])
        tx.security_groups.add_rules(db, [from_web, Rule("-1", -1, -1, peer=db)])
    duplicate = Rule("tcp", 22, 22, cidr="10.0.0.0/8", description="another description")
    udp = Rule("udp", 53, 53, cidr="0.0.0.0/0")
    told = re.escape("peer: 10.0.0.0/8, TCP, from port: 22")
    with pytest.raises(AlreadyExists, match=told), store.transaction() as tx:
        tx.security_groups.add_rules(web, [udp, duplicate])
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.security_groups.add_rules(db, [SSH, SSH])  # twice in one call
    with store.transaction(write=False) as tx:
        assert tx.security_groups.rules() == {
            web: [WEB, SSH, PING],
            db: [from_web, Rule("-1", -1, -1, peer=db)],
        }
        assert tx.security_groups.rules([db]) == {db: [from_web, Rule("-1", -1, -1, peer=db)]}
        assert tx.security_groups.rules([]) == {}
        assert tx.security_groups.referencing(web) == [db]
        assert tx.security_groups.referencing(db) == []  # its own rule does not count


def test_rules_need_their_group_and_peer_and_are_bounded(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.security_groups.add(group(1, alice))
    gid = group(1, alice).id
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.security_groups.add_rules("sg-00000000000000099", [SSH])
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.security_groups.add_rules(gid, [Rule("tcp", 1, 2, peer="sg-00000000000000099")])
    for bad in (
        Rule("tcp", 1, 2),  # no source
        Rule("tcp", 1, 2, cidr="10.0.0.0/8", peer=gid),  # two
        Rule("tcp", 1, 70000, cidr="10.0.0.0/8"),
        Rule("x" * 9, 1, 2, cidr="10.0.0.0/8"),
        Rule("tcp", 1, 2, cidr="10.0.0.0/8", description="d" * 256),
    ):
        with pytest.raises(InvalidInput), store.transaction() as tx:
            tx.security_groups.add_rules(gid, [bad])
    with store.transaction(write=False) as tx:
        assert tx.security_groups.rules() == {}


def test_rules_are_removed_by_key(store: Store) -> None:
    alice = seed(store)
    gid = group(1, alice).id
    with store.transaction() as tx:
        tx.security_groups.add(group(1, alice))
        tx.security_groups.add_rules(gid, [WEB, SSH, PING])
    with store.transaction() as tx:
        undescribed = Rule("tcp", 80, 443, cidr="0.0.0.0/0")
        assert tx.security_groups.remove_rules(gid, [undescribed, SSH, SSH]) == 2
        assert tx.security_groups.remove_rules(gid, [SSH]) == 0
        assert tx.security_groups.remove_rules(gid, []) == 0
    with store.transaction(write=False) as tx:
        assert tx.security_groups.rules() == {gid: [PING]}


def test_an_outbound_rule_is_another_rule_than_the_inbound_one_of_the_same_parts(
    store: Store,
) -> None:
    alice = seed(store)
    web, db = group(1, alice).id, group(2, alice).id
    out = Rule("tcp", 22, 22, cidr="10.0.0.0/8", egress=True)
    to_db = Rule("tcp", 5432, 5432, peer=db, egress=True)
    with store.transaction() as tx:
        tx.security_groups.add(group(1, alice))
        tx.security_groups.add(group(2, alice))
        tx.security_groups.add_rules(web, [SSH, out, to_db])
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.security_groups.add_rules(web, [Rule("tcp", 22, 22, cidr="10.0.0.0/8", egress=True)])
    with store.transaction(write=False) as tx:
        assert tx.security_groups.rules() == {web: [SSH, out, to_db]}
        assert tx.security_groups.referencing(db) == [web]  # outbound names count too
    with store.transaction() as tx:
        assert tx.security_groups.remove_rules(web, [out]) == 1
    with store.transaction(write=False) as tx:
        assert tx.security_groups.rules() == {web: [SSH, to_db]}


def test_a_named_group_stays_and_a_removed_one_takes_its_rules_and_tags(store: Store) -> None:
    alice = seed(store)
    web, db = group(1, alice).id, group(2, alice).id
    with store.transaction() as tx:
        tx.security_groups.add(group(1, alice))
        tx.security_groups.add(group(2, alice))
        tx.security_groups.add_rules(web, [SSH, Rule("-1", -1, -1, peer=web)])
        tx.security_groups.add_rules(db, [Rule("tcp", 5432, 5432, peer=web)])
        tx.security_group_tags.put(web, {"team": "web"})
    with pytest.raises(InvalidState), store.transaction() as tx:
        tx.security_groups.remove(web)
    with store.transaction() as tx:
        tx.security_groups.remove(db)
        tx.security_groups.remove(web)  # its own rule named it: no matter
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.security_groups.remove(web)
    with store.transaction(write=False) as tx:
        assert tx.security_groups.list() == []
        assert tx.security_groups.rules() == {}
        assert tx.security_group_tags.of() == {}


def test_groups_go_with_their_user(store: Store) -> None:
    alice = seed(store)
    other = bob(store)
    mine, theirs = group(1, alice).id, group(2, other).id
    with store.transaction() as tx:
        tx.security_groups.add(group(1, alice))
        tx.security_groups.add(group(2, other))
        tx.security_groups.add_rules(theirs, [SSH, Rule("tcp", 1, 9, peer=theirs)])
        tx.security_group_tags.put(theirs, {"k": "v"})
        tx.security_group_tags.put(mine, {"k": "mine"})
    with store.transaction() as tx:
        tx.users.remove(other)
    with store.transaction(write=False) as tx:
        assert [g.id for g in tx.security_groups.list()] == [mine]
        assert tx.security_groups.rules() == {}
        assert tx.security_group_tags.of() == {mine: {"k": "mine"}}


def test_tags_need_their_group_and_a_failed_unit_leaves_nothing(store: Store) -> None:
    alice = seed(store)
    gid = group(1, alice).id
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.security_group_tags.put(gid, {"k": "v"})

    def failing() -> None:
        with store.transaction() as tx:
            tx.security_groups.add(group(1, alice))
            tx.security_groups.add_rules(gid, [SSH])
            tx.security_group_tags.put(gid, {"k": "v"})
            raise RuntimeError("the unit fails")

    with pytest.raises(RuntimeError):
        failing()
    with store.transaction(write=False) as tx:
        assert tx.security_groups.list() == []
        assert tx.security_groups.rules() == {}
        assert tx.security_group_tags.of() == {}
