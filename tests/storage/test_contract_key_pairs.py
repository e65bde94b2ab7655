"""The store contract, continued: users' key pairs (``tx.key_pairs``) and the tags kept in the
store (``tx.key_pair_tags``, ``tx.image_tags``).

Part of the one contract suite (memory, SQLite, PostgreSQL, MariaDB): a key pair reads back as
it was added, by id and by its user's name for it; names are unique per user only and compare
exactly; unknown users and key pairs are ``NotFound``; key pairs go with their user and tags with
their key pair; tags are set, changed and removed by key, and a failed unit leaves none behind.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tashi.domain.errors import AlreadyExists, InvalidInput, NotFound
from tashi.domain.ids import UserId
from tashi.domain.keypairs import KeyPair, KeyType
from tashi.domain.models import Role
from tashi.storage.contract import Store
from tests.storage.test_contract import T0, seed

PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx4kq7zJ6k8q5p7v2n0w7r0d8m3f0a9g4h2j6k1l5m9 alice"


def pair(n: int, user: UserId, name: str = "", minutes: int = 0) -> KeyPair:
    return KeyPair(
        id=f"key-{n:017x}",
        user_id=user,
        name=name or f"key{n}",
        key_type=KeyType.ed25519,
        fingerprint=f"fp{n}=",
        public_key=PUBLIC,
        created_at=T0 + timedelta(minutes=minutes),
    )


def bob(store: Store) -> UserId:
    with store.transaction() as tx:
        return tx.users.add("bob", role=Role.user, priority=0, password_hash="h", now=T0).id


def test_a_key_pair_reads_back_by_id_and_by_name(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.key_pairs.add(pair(1, alice, "Deploy Key"))
    with store.transaction(write=False) as tx:
        assert tx.key_pairs.get(pair(1, alice).id) == pair(1, alice, "Deploy Key")
        assert tx.key_pairs.named(alice, "Deploy Key") == pair(1, alice, "Deploy Key")
        assert tx.key_pairs.named(alice, "deploy key") is None  # names compare exactly
        assert tx.key_pairs.get("key-00000000000000099") is None


def test_names_are_unique_per_user_and_users_must_exist(store: Store) -> None:
    alice = seed(store)
    other = bob(store)
    with store.transaction() as tx:
        tx.key_pairs.add(pair(1, alice, "main"))
        tx.key_pairs.add(pair(2, other, "main"))  # another user's may share the name
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.key_pairs.add(pair(3, alice, "main"))
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.key_pairs.add(pair(1, alice, "other"))  # the id
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.key_pairs.add(pair(4, UserId(9999)))
    with pytest.raises(InvalidInput), store.transaction() as tx:
        tx.key_pairs.add(pair(5, alice, "x" * 256))
    with store.transaction(write=False) as tx:
        assert [p.id for p in tx.key_pairs.list()] == [pair(1, alice).id, pair(2, other).id]


def test_key_pairs_list_by_user_then_name_and_go_with_their_user(store: Store) -> None:
    alice = seed(store)
    other = bob(store)
    with store.transaction() as tx:
        tx.key_pairs.add(pair(1, alice, "zeta"))
        tx.key_pairs.add(pair(2, alice, "alpha", minutes=5))
        tx.key_pairs.add(pair(3, other, "b"))
        tx.key_pair_tags.put(pair(3, other).id, {"team": "ops"})
    with store.transaction(write=False) as tx:
        assert [p.name for p in tx.key_pairs.list(alice)] == ["alpha", "zeta"]
        assert [p.name for p in tx.key_pairs.list()] == ["alpha", "zeta", "b"]
    with store.transaction() as tx:
        tx.users.remove(other)
    with store.transaction(write=False) as tx:
        assert tx.key_pairs.get(pair(3, other).id) is None
        assert tx.key_pair_tags.of() == {}
        assert len(tx.key_pairs.list()) == 2


def test_removing_a_key_pair_takes_its_tags(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.key_pairs.add(pair(1, alice))
        tx.key_pairs.add(pair(2, alice))
        tx.key_pair_tags.put(pair(1, alice).id, {"a": "1", "b": ""})
        tx.key_pair_tags.put(pair(2, alice).id, {"a": "2"})
        tx.key_pairs.remove(pair(1, alice).id)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.key_pairs.remove(pair(1, alice).id)
    with store.transaction(write=False) as tx:
        assert tx.key_pair_tags.of() == {pair(2, alice).id: {"a": "2"}}


def test_key_pair_tags_need_their_key_pair(store: Store) -> None:
    seed(store)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.key_pair_tags.put("key-00000000000000077", {"a": "1"})


def test_tags_are_set_changed_and_removed_by_key(store: Store) -> None:
    with store.transaction() as tx:
        tx.image_tags.put("debian.qcow2", {"os": "debian", "Env": "", "tier": "base"})
        tx.image_tags.put("tiny.img", {"os": "none"})
        tx.image_tags.put("debian.qcow2", {"os": "Debian 12", "new": "x"})  # os changes
    with store.transaction(write=False) as tx:
        assert tx.image_tags.of(["debian.qcow2"]) == {
            "debian.qcow2": {"Env": "", "new": "x", "os": "Debian 12", "tier": "base"}
        }
        assert list(tx.image_tags.of()) == ["debian.qcow2", "tiny.img"]
        assert tx.image_tags.of([]) == {}
        assert tx.image_tags.of(["nothing"]) == {}
    with store.transaction() as tx:
        assert tx.image_tags.delete("debian.qcow2", ["os", "missing"]) == 1
        assert tx.image_tags.delete("tiny.img") == 1
        assert tx.image_tags.delete("tiny.img", []) == 0
    with store.transaction(write=False) as tx:
        assert tx.image_tags.of() == {"debian.qcow2": {"Env": "", "new": "x", "tier": "base"}}


def test_tag_keys_compare_exactly_and_are_bounded(store: Store) -> None:
    with store.transaction() as tx:
        tx.image_tags.put("img", {"Name": "a", "name": "b", "ключ": "значение"})
    with store.transaction(write=False) as tx:
        assert tx.image_tags.of()["img"] == {"Name": "a", "name": "b", "ключ": "значение"}
    for bad in ({"": "x"}, {"k" * 129: "x"}, {"k": "v" * 257}):
        with pytest.raises(InvalidInput), store.transaction() as tx:
            tx.image_tags.put("img", bad)
    with store.transaction() as tx:
        tx.image_tags.put("img", {"k" * 128: "v" * 256})


def test_a_failed_unit_leaves_no_tag_behind(store: Store) -> None:
    def fail() -> None:
        with store.transaction() as tx:
            tx.image_tags.put("img", {"a": "1"})
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        fail()
    with store.transaction(write=False) as tx:
        assert tx.image_tags.of() == {}
