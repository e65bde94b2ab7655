"""The store contract, continued: the DHCP/DNS hook's address allocations (``tx.addresses``).

Part of the one contract suite (``store``/``backend`` of ``conftest.py``: memory, SQLite,
PostgreSQL, MariaDB). What matters to the hook: the lowest free address, the same one again for
the same NIC, never one address twice on a network (not even from two threads at once, nor after
a reopen), and the addresses of a removed instance free again in the unit that removed it.
"""

from __future__ import annotations

import threading

import pytest

from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    InsufficientResources,
    InvalidInput,
    InvalidState,
    NotFound,
)
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import NicConfig
from tashi.domain.states import InstanceState
from tashi.storage.contract import Address, InstanceChanges, Store
from tests.storage.conftest import Backend
from tests.storage.test_contract import NET, NET2, T0, add, seed, spec

RANGE = ("198.19.1.10", "198.19.1.12")


def allocate(store: Store, iid: InstanceId, nic: int, net: NetworkId = NET) -> str:
    with store.transaction() as tx:
        return tx.addresses.allocate(iid, nic, net, *RANGE).ip


def instances(store: Store, count: int) -> list[InstanceId]:
    user = seed(store)
    return [
        add(store, user, spec(f"vm{i}", NicConfig(NET, f"52:54:00:00:10:{i:02x}"))).id
        for i in range(count)
    ]


def test_the_lowest_free_address_and_the_same_one_again_for_the_same_nic(store: Store) -> None:
    a, b = instances(store, 2)
    assert allocate(store, a, 0) == "198.19.1.10"
    assert allocate(store, b, 0) == "198.19.1.11"
    assert allocate(store, a, 0) == "198.19.1.10"  # a retry: no second address
    assert allocate(store, a, 1, NET2) == "198.19.1.10"  # another network, its own addresses
    with store.transaction(write=False) as tx:
        assert tx.addresses.list() == [
            Address(NET, "198.19.1.10", a, 0),
            Address(NET2, "198.19.1.10", a, 1),
            Address(NET, "198.19.1.11", b, 0),
        ]
        assert tx.addresses.list(network_id=NET2) == [Address(NET2, "198.19.1.10", a, 1)]
        assert [x.ip for x in tx.addresses.list(instance_id=b)] == ["198.19.1.11"]


def test_a_full_range_is_insufficient_and_a_release_frees_the_lowest(store: Store) -> None:
    a, b, c, d = instances(store, 4)
    for iid in (a, b, c):
        allocate(store, iid, 0)
    with pytest.raises(InsufficientResources, match=r"198\.19\.1\.10 to 198\.19\.1\.12"):
        allocate(store, d, 0)
    with store.transaction() as tx:
        assert tx.addresses.release(b) == 1
        assert tx.addresses.release(b) == 0
    assert allocate(store, d, 0) == "198.19.1.11"


def test_addresses_on_nics_count_as_taken(store: Store) -> None:
    a, b = instances(store, 2)
    with store.transaction() as tx:
        inst = tx.instances.get(a)
        nics = (NicConfig(NET, inst.nics[0].mac, "198.19.1.10"),)
        tx.instances.transition(
            a, inst.state, inst.state, now=T0, changes=InstanceChanges(nics=nics)
        )
    assert allocate(store, b, 0) == "198.19.1.11"
    with store.transaction() as tx:  # its own NIC's address is the one it may have
        assert tx.addresses.allocate(a, 0, NET, "198.19.1.10", "198.19.1.10").ip == "198.19.1.10"


def test_removing_an_instance_releases_its_addresses_in_the_same_unit(store: Store) -> None:
    a, b = instances(store, 2)
    allocate(store, a, 0)
    allocate(store, a, 1, NET2)
    seen: list[list[Address]] = []

    def remove_then_fail() -> None:
        with store.transaction() as tx:
            tx.instances.remove(a, InstanceState.Pending)
            seen.append(tx.addresses.list(instance_id=a))
            raise RuntimeError("rolled back: the instance and its addresses stay")

    with pytest.raises(RuntimeError):
        remove_then_fail()
    assert seen == [[]]
    with store.transaction(write=False) as tx:
        assert len(tx.addresses.list(instance_id=a)) == 2
    with store.transaction() as tx:
        tx.instances.remove(a, InstanceState.Pending)
    with store.transaction(write=False) as tx:
        assert tx.addresses.list() == []
    assert allocate(store, b, 0) == "198.19.1.10"


def test_bad_ranges_and_unknown_instances_or_networks_are_refused(store: Store) -> None:
    (a,) = instances(store, 1)
    with store.transaction() as tx:
        with pytest.raises(InvalidInput, match="not a range"):
            tx.addresses.allocate(a, 0, NET, "198.19.1.12", "198.19.1.10")
        with pytest.raises(InvalidInput):
            tx.addresses.allocate(a, 0, NET, "198.19.1.1", "somewhere")
        with pytest.raises(NotFound, match="instance 999"):
            tx.addresses.allocate(InstanceId(999), 0, NET, *RANGE)
        with pytest.raises(NotFound, match="network 77"):
            tx.addresses.allocate(a, 0, NetworkId(77), *RANGE)


def test_a_network_with_allocations_cannot_be_removed(store: Store) -> None:
    (a,) = instances(store, 1)
    allocate(store, a, 0)
    with pytest.raises(InvalidState), store.transaction() as tx:
        tx.networks.remove(NET)


def test_allocations_survive_a_reopen(backend: Backend) -> None:
    a, b = instances(backend.store, 2)
    allocate(backend.store, a, 0)
    store = backend.reopen()
    assert allocate(store, a, 0) == "198.19.1.10"
    assert allocate(store, b, 0) == "198.19.1.11"


def test_concurrent_allocations_never_share_an_address(backend: Backend) -> None:
    store = backend.store
    ids = instances(store, 3)
    got: dict[InstanceId, str] = {}
    start = threading.Barrier(len(ids))

    def worker(iid: InstanceId) -> None:
        start.wait()
        for _ in range(20):  # a loser of a race runs its unit again, as the service does
            try:
                got[iid] = allocate(store, iid, 0)
                return
            except (AlreadyExists, BackendFailure):
                continue

    threads = [threading.Thread(target=worker, args=(iid,)) for iid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(got.values()) == ["198.19.1.10", "198.19.1.11", "198.19.1.12"]


def test_a_nic_is_added_last_and_only_the_last_is_removed_with_its_address(store: Store) -> None:
    [iid] = instances(store, 1)
    pending = InstanceState.Pending
    with store.transaction() as tx:
        added = tx.instances.add_nic(iid, pending, NicConfig(NET2, "52:54:00:00:20:01"), now=T0)
    assert [(n.network, n.mac) for n in added.nics] == [
        (NET, "52:54:00:00:10:00"),
        (NET2, "52:54:00:00:20:01"),
    ]
    assert allocate(store, iid, 1, NET2) == "198.19.1.10"
    with store.transaction() as tx:
        assert tx.instances.get(iid).nics == added.nics
        with pytest.raises(AlreadyExists):  # a MAC in use
            tx.instances.add_nic(iid, pending, NicConfig(NET, "52:54:00:00:10:00"), now=T0)
    with store.transaction() as tx, pytest.raises(InvalidState):  # compare-and-swap
        tx.instances.add_nic(
            iid, InstanceState.Running, NicConfig(NET, "52:54:00:00:20:02"), now=T0
        )
    with store.transaction() as tx, pytest.raises(NotFound):
        tx.instances.add_nic(iid, pending, NicConfig(NetworkId(77), "52:54:00:00:20:03"), now=T0)
    with store.transaction() as tx, pytest.raises(InvalidInput):  # not the last
        tx.instances.remove_nic(iid, pending, "52:54:00:00:10:00", now=T0)
    with store.transaction() as tx:
        left = tx.instances.remove_nic(iid, pending, "52:54:00:00:20:01", now=T0)
        assert left.nics == added.nics[:1]
        assert tx.instances.remove_nic(iid, pending, "52:54:00:00:20:01", now=T0) == left
    with store.transaction(write=False) as tx:
        assert tx.instances.get(iid).nics == added.nics[:1]
        assert tx.addresses.list(instance_id=iid) == []  # its address went with it
