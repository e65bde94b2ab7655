"""The store contract, continued: keyset paging of the lists that the REST API pages.

Part of the one contract suite (memory, SQLite, PostgreSQL, MariaDB). Every paged list takes
``after_id`` (only ids greater) and ``limit`` (at most so many; negative is ``InvalidInput``),
in id order, as ``InstanceFilter`` does; walking the pages yields the whole list exactly once.
"""

from __future__ import annotations

import pytest

from tashi.domain.errors import InvalidInput
from tashi.domain.ids import HostId, InstanceId, NetworkId
from tashi.domain.models import Network, NicConfig, Role, Usage
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceChanges, Store
from tests.storage.test_contract import NET, NET2, T0, add, seed, spec
from tests.storage.test_contract_access_keys import key


def _hosts(store: Store, n: int) -> list[HostId]:
    with store.transaction() as tx:
        return [
            tx.hosts.add(f"node{i}", memory=1024, cores=2, version="1", now=T0).id for i in range(n)
        ]


def test_hosts_page_by_id_after_a_marker(store: Store) -> None:
    ids = _hosts(store, 5)
    with store.transaction(write=False) as tx:
        first = tx.hosts.list(limit=2)
        second = tx.hosts.list(after_id=first[-1].id, limit=2)
        third = tx.hosts.list(after_id=second[-1].id, limit=2)
        past = tx.hosts.list(after_id=third[-1].id, limit=2)
        everything = tx.hosts.list()
    assert [h.id for h in first + second + third] == ids
    assert len(third) == 1 and past == []
    assert everything == first + second + third
    with store.transaction(write=False) as tx:
        assert tx.hosts.list(limit=0) == []
        assert [h.id for h in tx.hosts.list(after_id=ids[2])] == ids[3:]


def test_hosts_listed_by_id_keep_their_reservations(store: Store) -> None:
    alice = seed(store)
    ids = _hosts(store, 4)
    with store.transaction() as tx:
        tx.hosts.add_reservation(ids[2], alice)
    with store.transaction(write=False) as tx:
        chosen = tx.hosts.list(ids={ids[3], ids[2], HostId(999_999)})
        none = tx.hosts.list(ids=[])
        paged = tx.hosts.list(ids=ids, after_id=ids[0], limit=1)
    assert [h.id for h in chosen] == [ids[2], ids[3]]
    assert chosen[0].reserved == (alice,)
    assert none == []
    assert [h.id for h in paged] == [ids[1]]


def test_a_negative_host_limit_is_invalid_input(store: Store) -> None:
    _hosts(store, 1)
    with store.transaction(write=False) as tx, pytest.raises(InvalidInput):
        tx.hosts.list(limit=-1)


def test_usage_by_host_can_be_asked_for_a_page_of_hosts(store: Store) -> None:
    alice = seed(store)
    a, b = _hosts(store, 2)
    for host in (a, b, b):
        inst = add(store, alice, spec(f"vm{host}"))
        with store.transaction() as tx:
            tx.instances.transition(
                inst.id,
                InstanceState.Pending,
                InstanceState.Running,
                now=T0,
                changes=InstanceChanges(host_id=host),
            )
    with store.transaction(write=False) as tx:
        page = tx.instances.usage_by_host([InstanceState.Running], host_ids=[b])
        whole = tx.instances.usage_by_host([InstanceState.Running])
    assert page == {b: Usage(2, 512, 2)}
    assert whole == {a: Usage(1, 256, 1), b: Usage(2, 512, 2)}


def test_users_and_networks_page_by_id(store: Store) -> None:
    seed(store)  # alice and the networks 10 and 20
    with store.transaction() as tx:
        for n in range(3):
            tx.users.add(f"user{n}", role=Role.user, priority=0, password_hash="h", now=T0)
        tx.networks.add(NetworkId(30), "net30")
    with store.transaction(write=False) as tx:
        users = tx.users.list()
        first = tx.users.list(limit=2)
        rest = tx.users.list(after_id=first[-1].id)
        nets = tx.networks.list(limit=2)
        more = tx.networks.list(after_id=nets[-1].id, limit=2)
        with pytest.raises(InvalidInput):
            tx.users.list(limit=-1)
        with pytest.raises(InvalidInput):
            tx.networks.list(limit=-1)
    assert [u.name for u in users] == ["alice", "user0", "user1", "user2"]
    assert first + rest == users and len(first) == 2
    assert tx_ids(nets + more) == [10, 20, 30]
    assert tx_ids(more) == [30]


def tx_ids(rows: list[Network]) -> list[int]:
    return [r.id for r in rows]


def test_history_pages_from_the_start_after_an_event_id(store: Store) -> None:
    iid = InstanceId(7)
    with store.transaction() as tx:
        ids = [tx.events.add(iid, "step", f"m{n}", now=T0).id for n in range(5)]
        tx.events.add(InstanceId(8), "other", "not this one", now=T0)
    with store.transaction(write=False) as tx:
        newest = tx.events.list(iid, limit=2)
        first = tx.events.list(iid, limit=2, after_id=0)
        second = tx.events.list(iid, limit=2, after_id=first[-1].id)
        last = tx.events.list(iid, limit=2, after_id=second[-1].id)
        past = tx.events.list(iid, limit=2, after_id=ids[-1])
        with pytest.raises(InvalidInput):
            tx.events.list(iid, limit=-1, after_id=0)
    assert [e.id for e in newest] == ids[3:]
    assert [e.id for e in first + second + last] == ids
    assert [e.message for e in last] == ["m4"] and past == []


def test_addresses_page_by_instance_never_splitting_one(store: Store) -> None:
    owner = seed(store)
    iids = [
        add(
            store,
            owner,
            spec(
                f"vm{i}",
                NicConfig(NET, f"52:54:00:00:20:{i:02x}"),
                NicConfig(NET2, f"52:54:00:00:21:{i:02x}"),
            ),
        ).id
        for i in range(3)
    ]
    with store.transaction() as tx:
        for iid in iids:
            tx.addresses.allocate(iid, 0, NET, "198.19.2.10", "198.19.2.20")
            tx.addresses.allocate(iid, 1, NET2, "198.19.2.10", "198.19.2.20")
    with store.transaction(write=False) as tx:
        every = tx.addresses.list()
        first = tx.addresses.list(instances=2)
        rest = tx.addresses.list(after_instance=first[-1].instance_id, instances=2)
        on_net2 = tx.addresses.list(network_id=NET2, instances=1)
        with pytest.raises(InvalidInput):
            tx.addresses.list(instances=-1)
    assert [(a.instance_id, a.nic_index) for a in first] == [
        (iids[0], 0),
        (iids[0], 1),
        (iids[1], 0),
        (iids[1], 1),
    ]
    assert first + rest == every and len(every) == 6
    assert [(a.instance_id, a.network_id) for a in on_net2] == [(iids[0], NET2)]


def test_access_keys_page_oldest_first_after_a_key(store: Store) -> None:
    alice = seed(store)
    # two keys made in the same instant: the id breaks the tie
    made = [key(n, alice, minutes=n // 2) for n in range(5)]
    with store.transaction() as tx:
        for k in reversed(made):
            tx.access_keys.add(k, f"sealed-{k.id}")
    with store.transaction(write=False) as tx:
        every = tx.access_keys.list()
        first = tx.access_keys.list(limit=2)
        second = tx.access_keys.list(after_key=first[-1].id, limit=2)
        last = tx.access_keys.list(alice, after_key=second[-1].id, limit=2)
        past = tx.access_keys.list(after_key=made[-1].id)
        with pytest.raises(InvalidInput):
            tx.access_keys.list(after_key="AKIANOSUCHKEY0000000")
        with pytest.raises(InvalidInput):
            tx.access_keys.list(limit=-1)
    assert every == made
    assert first + second + last == made and len(last) == 1 and past == []
