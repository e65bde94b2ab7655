"""The store contract, continued: users' EC2 access keys (``tx.access_keys``).

Part of the one contract suite (memory, SQLite, PostgreSQL, MariaDB): a key reads back with its
sealed secret and its user, ids are unique, unknown users and keys are ``NotFound``, listing is
oldest first, and a user's keys go with the user.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tashi.domain.errors import AlreadyExists, InvalidInput, NotFound
from tashi.domain.ids import UserId
from tashi.domain.models import AccessKey, Role
from tashi.storage.contract import Store
from tests.storage.test_contract import T0, seed


def key(n: int, user: UserId, minutes: int = 0) -> AccessKey:
    return AccessKey(f"AKIATEST{n:012d}", user, T0 + timedelta(minutes=minutes))


def test_an_access_key_reads_back_with_its_sealed_secret_and_user(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.access_keys.add(key(1, alice), "sealed-1")
    with store.transaction(write=False) as tx:
        found = tx.access_keys.get(key(1, alice).id)
        assert tx.access_keys.get("AKIANOSUCHKEY0000000") is None
    assert found is not None
    got, sealed, principal = found
    assert got == key(1, alice)
    assert sealed == "sealed-1"
    assert (principal.user_id, principal.name, principal.role) == (alice, "alice", Role.user)


def test_key_ids_are_unique_and_users_must_exist(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.access_keys.add(key(1, alice), "s")
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.access_keys.add(key(1, alice, minutes=5), "other")
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.access_keys.add(key(2, UserId(9999)), "s")
    with pytest.raises(InvalidInput), store.transaction() as tx:
        tx.access_keys.add(key(3, alice), "x" * 1000)


def test_keys_list_oldest_first_per_user_and_go_with_their_user(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        bob = tx.users.add("bob", role=Role.user, priority=0, password_hash="h", now=T0).id
        tx.access_keys.add(key(1, alice, minutes=2), "a1")
        tx.access_keys.add(key(2, bob, minutes=1), "b1")
        tx.access_keys.add(key(3, alice, minutes=0), "a2")
    with store.transaction(write=False) as tx:
        assert [k.id for k in tx.access_keys.list(alice)] == [key(3, alice).id, key(1, alice).id]
        assert len(tx.access_keys.list()) == 3
    with store.transaction() as tx:
        tx.users.remove(bob)
    with store.transaction(write=False) as tx:
        assert tx.access_keys.get(key(2, bob).id) is None
        assert len(tx.access_keys.list()) == 2


def test_removing_a_key(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.access_keys.add(key(1, alice), "s")
        tx.access_keys.remove(key(1, alice).id)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.access_keys.remove(key(1, alice).id)
    with store.transaction(write=False) as tx:
        assert tx.access_keys.get(key(1, alice).id) is None
