"""The store contract (``storage/contract.py``), checked on every implementation.

Each test runs on the in-memory fake, SQLite, PostgreSQL and MariaDB (``conftest.backend``).
The promises are tested in the order the contract states them: ids, compare-and-swap,
uniqueness, removal rules, rollback, filtering, timestamps, then hosts, networks, users, tokens,
and two threads racing on one instance.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tashi.domain.errors import (
    AlreadyExists,
    InvalidInput,
    InvalidState,
    NotFound,
    StateConflict,
)
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, Instance, InstanceSpec, NicConfig, Role
from tashi.domain.states import HostState, InstanceState
from tashi.storage.contract import InstanceChanges, InstanceFilter, Store
from tashi.storage.shared import iterate_all
from tests.storage.conftest import Backend

S = InstanceState
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
NET = NetworkId(10)
NET2 = NetworkId(20)


def mac(n: int) -> str:
    return f"52:54:00:00:{n // 256:02x}:{n % 256:02x}"


def spec(name: str, *nics: NicConfig, hints: dict[str, str] | None = None) -> InstanceSpec:
    return InstanceSpec(
        name=name,
        cores=1,
        memory=256,
        disks=(DiskConfig("base.qcow2"), DiskConfig("data.qcow2", persistent=True)),
        nics=nics,
        hints=hints or {},
        group_name="grp",
    )


def seed(store: Store) -> UserId:
    """One user and two networks; returns the user's id."""
    with store.transaction() as tx:
        user = tx.users.add("alice", role=Role.user, priority=0, password_hash="h", now=T0)
        tx.networks.add(NET, "net10")
        tx.networks.add(NET2, "net20")
    return user.id


def add(store: Store, owner: UserId, s: InstanceSpec, *, unique: bool = False) -> Instance:
    with store.transaction() as tx:
        return tx.instances.add(owner, s, unique_name=unique, now=T0)


def get(store: Store, iid: InstanceId) -> Instance:
    with store.transaction(write=False) as tx:
        return tx.instances.get(iid)


def find(store: Store, **where: object) -> list[Instance]:
    with store.transaction(write=False) as tx:
        return tx.instances.find(InstanceFilter(**where))  # type: ignore[arg-type]


# --- ids -------------------------------------------------------------------------------------


def test_added_instance_reads_back_equal_with_store_assigned_increasing_ids(store: Store) -> None:
    owner = seed(store)
    first = add(store, owner, spec("a", NicConfig(NET, mac(1), "10.0.0.1")), unique=True)
    second = add(store, owner, spec("b", hints={"k": "v"}))
    assert first.id < second.id
    assert get(store, first.id) == first
    assert get(store, second.id) == second
    assert first.state is S.Pending and first.created_at == first.state_since == T0
    assert second.hints == {"k": "v"} and second.nics == ()
    assert get(store, first.id).disks[1] == DiskConfig("data.qcow2", persistent=True)


def test_ids_are_never_reused_even_after_removing_the_highest_and_reopening(
    backend: Backend,
) -> None:
    owner = seed(backend.store)
    add(backend.store, owner, spec("a"))
    top = add(backend.store, owner, spec("b"))
    with backend.store.transaction() as tx:
        host = tx.hosts.add("h1", memory=1, cores=1, version="1", now=T0)
        extra = tx.users.add("bob", role=Role.user, priority=0, password_hash="h", now=T0)
        tx.instances.remove(top.id, S.Pending)
        tx.hosts.remove(host.id)
        tx.users.remove(extra.id)
    store = backend.reopen()
    newer = add(store, owner, spec("c"))
    with store.transaction() as tx:
        new_host = tx.hosts.add("h2", memory=1, cores=1, version="1", now=T0)
        new_user = tx.users.add("carol", role=Role.user, priority=0, password_hash="h", now=T0)
    assert newer.id > top.id
    assert new_host.id > host.id
    assert new_user.id > extra.id


# --- compare-and-swap ------------------------------------------------------------------------


def test_transition_swaps_state_applies_changes_and_restamps_state_since(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    later = T0 + timedelta(seconds=5)
    changes = InstanceChanges(host_id=HostId(7), vm_id=4242, reason="placed")
    with store.transaction() as tx:
        moved = tx.instances.transition(
            inst.id, S.Pending, S.Activating, now=later, changes=changes
        )
    assert (moved.state, moved.host_id, moved.vm_id, moved.reason) == (
        S.Activating,
        7,
        4242,
        "placed",
    )
    assert moved.state_since == later and moved.created_at == T0
    assert get(store, inst.id) == moved


def test_transition_from_a_stale_state_raises_state_conflict_and_changes_nothing(
    store: Store,
) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    with store.transaction() as tx:
        tx.instances.transition(inst.id, S.Pending, S.Held, now=T0)
    with pytest.raises(StateConflict, match="Held"), store.transaction() as tx:
        tx.instances.transition(
            inst.id, S.Pending, S.Activating, now=T0, changes=InstanceChanges(host_id=HostId(1))
        )
    assert get(store, inst.id).state is S.Held
    assert get(store, inst.id).host_id is None


def test_transition_and_remove_of_a_missing_instance_raise_not_found(store: Store) -> None:
    seed(store)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.instances.transition(InstanceId(999_999), S.Pending, S.Held, now=T0)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.instances.remove(InstanceId(999_999), S.Pending)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.instances.get(InstanceId(999_999))


def test_transition_to_the_same_state_keeps_state_since_and_applies_changes(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    with store.transaction() as tx:
        same = tx.instances.transition(inst.id, S.Pending, S.Pending, now=T0 + timedelta(hours=1))
        again = tx.instances.transition(
            inst.id, S.Pending, S.Pending, now=T0, changes=InstanceChanges(reason="waiting")
        )
    assert same.state_since == T0 and same == inst
    assert again.reason == "waiting"


def test_transition_changes_the_cpu_share(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    with store.transaction() as tx:
        changed = tx.instances.transition(
            inst.id, S.Pending, S.Pending, now=T0, changes=InstanceChanges(cpu_share=2048)
        )
    with store.transaction(write=False) as tx:
        assert tx.instances.get(inst.id).cpu_share == changed.cpu_share == 2048


def test_transition_changes_the_size(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    with store.transaction() as tx:
        changed = tx.instances.transition(
            inst.id, S.Pending, S.Held, now=T0, changes=InstanceChanges(cores=4, memory=2048)
        )
    with store.transaction(write=False) as tx:
        got = tx.instances.get(inst.id)
        assert (got.cores, got.memory) == (changed.cores, changed.memory) == (4, 2048)
        assert got.state is S.Held


def test_transition_replaces_the_disks(store: Store) -> None:
    owner = seed(store)
    template = DiskConfig("tmpl.qcow2", persistent=True, copy=True)
    inst = add(store, owner, replace(spec("a"), disks=(DiskConfig("base.qcow2"), template)))
    assert get(store, inst.id).disks[1] == template  # ``copy`` is kept
    copied = (DiskConfig("base.qcow2"), DiskConfig("a-1-disk1.qcow2", persistent=True))
    with store.transaction() as tx:
        changed = tx.instances.transition(
            inst.id, S.Pending, S.Pending, now=T0, changes=InstanceChanges(disks=copied)
        )
        tx.instances.transition(  # no ``disks``: left alone
            inst.id, S.Pending, S.Pending, now=T0, changes=InstanceChanges(reason="r")
        )
    assert changed.disks == get(store, inst.id).disks == find(store, ids=[inst.id])[0].disks
    assert get(store, inst.id).disks == copied


def test_transition_clears_fields_only_when_asked(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    set_all = InstanceChanges(host_id=HostId(3), vm_id=9, reason="r", hints={"x": "1"})
    with store.transaction() as tx:
        tx.instances.transition(inst.id, S.Pending, S.Activating, now=T0, changes=set_all)
        kept = tx.instances.transition(inst.id, S.Activating, S.Running, now=T0)
        cleared = tx.instances.transition(
            inst.id,
            S.Running,
            S.Running,
            now=T0,
            changes=InstanceChanges(clear_host=True, clear_vm=True, clear_reason=True),
        )
    assert (kept.host_id, kept.vm_id, kept.reason, kept.hints) == (3, 9, "r", {"x": "1"})
    assert (cleared.host_id, cleared.vm_id, cleared.reason) == (None, None, None)
    assert cleared.hints == {"x": "1"}


def test_transition_sets_nic_addresses_by_mac(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a", NicConfig(NET, mac(1)), NicConfig(NET2, mac(2))))
    with store.transaction() as tx:
        done = tx.instances.transition(
            inst.id,
            S.Pending,
            S.Pending,
            now=T0,
            changes=InstanceChanges(nics=(NicConfig(NET2, mac(2), "10.0.0.9"),)),
        )
    assert done.nics == (NicConfig(NET, mac(1)), NicConfig(NET2, mac(2), "10.0.0.9"))
    assert get(store, inst.id).nics == done.nics


def test_remove_is_compare_and_swap_and_frees_names_and_macs(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("web", NicConfig(NET, mac(1), "10.0.0.1")), unique=True)
    with pytest.raises(StateConflict), store.transaction() as tx:
        tx.instances.remove(inst.id, S.Running)
    assert get(store, inst.id) == inst
    with store.transaction() as tx:
        tx.instances.remove(inst.id, S.Pending)
    with pytest.raises(NotFound):
        get(store, inst.id)
    with store.transaction(write=False) as tx:
        assert tx.instances.macs_in_use([mac(1)]) == set()
    again = add(store, owner, spec("web", NicConfig(NET, mac(1), "10.0.0.1")), unique=True)
    assert again.id > inst.id


# --- uniqueness ------------------------------------------------------------------------------


def test_instance_names_are_unique_only_when_asked(store: Store) -> None:
    owner = seed(store)
    add(store, owner, spec("db"))  # not reserved: a later unique "db" may still be added
    unique = add(store, owner, spec("web"), unique=True)
    add(store, owner, spec("web"))  # a duplicate that did not ask for uniqueness is fine
    add(store, owner, spec("db"), unique=True)
    with pytest.raises(AlreadyExists, match="'web'"):
        add(store, owner, spec("web"), unique=True)
    with store.transaction() as tx:
        tx.instances.remove(unique.id, S.Pending)
    add(store, owner, spec("web"), unique=True)


def test_names_are_case_sensitive_everywhere(store: Store) -> None:
    owner = seed(store)
    add(store, owner, spec("Web"), unique=True)
    add(store, owner, spec("web"), unique=True)
    assert [i.name for i in find(store, name="web")] == ["web"]


def test_a_mac_address_belongs_to_one_nic(store: Store) -> None:
    owner = seed(store)
    add(store, owner, spec("a", NicConfig(NET, mac(1))))
    with pytest.raises(AlreadyExists, match=mac(1)):
        add(store, owner, spec("b", NicConfig(NET2, mac(1))))
    with pytest.raises(AlreadyExists, match=mac(2)):
        add(store, owner, spec("c", NicConfig(NET, mac(2)), NicConfig(NET2, mac(2))))
    assert [i.name for i in find(store)] == ["a"]


def test_an_address_is_unique_within_its_network_only(store: Store) -> None:
    owner = seed(store)
    first = add(store, owner, spec("a", NicConfig(NET, mac(1), "10.0.0.5")))
    add(store, owner, spec("b", NicConfig(NET2, mac(2), "10.0.0.5")))
    add(store, owner, spec("c", NicConfig(NET, mac(3)), NicConfig(NET2, mac(4))))  # no IPs
    d = add(store, owner, spec("d", NicConfig(NET, mac(5))))
    with pytest.raises(AlreadyExists, match=r"10\.0\.0\.5"):
        add(store, owner, spec("e", NicConfig(NET, mac(6), "10.0.0.5")))
    later = add(store, owner, spec("f", NicConfig(NET, mac(7))))

    def hold_f_then_give_d_a_taken_address() -> None:
        with store.transaction() as tx:
            tx.instances.transition(later.id, S.Pending, S.Held, now=T0)
            clash = InstanceChanges(nics=(NicConfig(NET, mac(5), "10.0.0.5"),))
            tx.instances.transition(d.id, S.Pending, S.Pending, now=T0, changes=clash)

    with pytest.raises(AlreadyExists, match=r"10\.0\.0\.5"):
        hold_f_then_give_d_a_taken_address()
    assert get(store, later.id).state is S.Pending  # the whole unit was rolled back
    assert get(store, d.id).nics[0].ip is None
    assert get(store, first.id).nics[0].ip == "10.0.0.5"


def test_unknown_owner_or_network_is_not_found(store: Store) -> None:
    owner = seed(store)
    with pytest.raises(NotFound, match="user"):
        add(store, UserId(999_999), spec("a"))
    with pytest.raises(NotFound, match="network"):
        add(store, owner, spec("a", NicConfig(NetworkId(999), mac(1))))
    assert find(store) == []


# --- removal rules and rollback --------------------------------------------------------------


def test_removing_a_user_who_owns_instances_is_invalid_state(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    with pytest.raises(InvalidState, match="alice"), store.transaction() as tx:
        tx.users.remove(owner)
    with store.transaction() as tx:
        tx.instances.remove(inst.id, S.Pending)
        tx.users.remove(owner)
        assert [u.name for u in tx.users.list()] == []


def test_removing_a_network_with_nics_on_it_is_invalid_state(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a", NicConfig(NET, mac(1))))
    with pytest.raises(InvalidState, match="10"), store.transaction() as tx:
        tx.networks.remove(NET)
    with store.transaction() as tx:
        tx.networks.remove(NET2)
        tx.instances.remove(inst.id, S.Pending)
        tx.networks.remove(NET)
        assert tx.networks.list() == []
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.networks.remove(NET)


def test_an_exception_rolls_back_the_whole_transaction(store: Store) -> None:
    owner = seed(store)

    def add_everything_then_fail() -> None:
        with store.transaction() as tx:
            tx.users.add("bob", role=Role.user, priority=1, password_hash="h", now=T0)
            tx.networks.add(NetworkId(30), "net30")
            tx.hosts.add("h1", memory=1024, cores=2, version="1", now=T0)
            tx.instances.add(owner, spec("a", NicConfig(NET, mac(1))), unique_name=True, now=T0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        add_everything_then_fail()
    with store.transaction(write=False) as tx:
        assert [u.name for u in tx.users.list()] == ["alice"]
        assert [n.id for n in tx.networks.list()] == [NET, NET2]
        assert tx.hosts.list() == []
        assert tx.instances.find() == []
        assert tx.instances.macs_in_use([mac(1)]) == set()
    add(store, owner, spec("a", NicConfig(NET, mac(1))), unique=True)  # nothing was left behind


def test_a_uniqueness_violation_rolls_back_earlier_work_in_the_same_transaction(
    store: Store,
) -> None:
    owner = seed(store)
    add(store, owner, spec("a", NicConfig(NET, mac(1))))

    def add_b_then_c_with_a_taken_mac() -> None:
        with store.transaction() as tx:
            tx.instances.add(owner, spec("b"), unique_name=False, now=T0)
            tx.instances.add(owner, spec("c", NicConfig(NET, mac(1))), unique_name=False, now=T0)

    with pytest.raises(AlreadyExists, match=mac(1)):
        add_b_then_c_with_a_taken_mac()
    assert [i.name for i in find(store)] == ["a"]


# --- finding ---------------------------------------------------------------------------------


def populate(store: Store) -> tuple[UserId, UserId, list[Instance]]:
    alice = seed(store)
    with store.transaction() as tx:
        bob = tx.users.add("bob", role=Role.user, priority=0, password_hash="h", now=T0).id
    names = ["web1", "web-1", "webx", "we", "web", "db1", "web2", "x", "wec", "web10"]
    made: list[Instance] = []
    for n, name in enumerate(names):
        owner = alice if n % 2 == 0 else bob
        inst = add(store, owner, spec(name, NicConfig(NET, mac(n))))
        if n % 3 == 1:
            with store.transaction() as tx:
                changes = InstanceChanges(host_id=HostId(1 + n % 2))
                inst = tx.instances.transition(
                    inst.id, S.Pending, S.Activating, now=T0, changes=changes
                )
        made.append(inst)
    return alice, bob, made


def test_find_filters_order_and_limits(store: Store) -> None:
    alice, bob, made = populate(store)
    ids = [i.id for i in made]

    def names(**where: object) -> list[str]:
        found = find(store, **where)
        assert [i.id for i in found] == sorted(i.id for i in found)
        return [i.name for i in found]

    assert [i.id for i in find(store)] == ids
    assert find(store) == made
    assert names(user_id=bob) == ["web-1", "we", "db1", "x", "web10"]
    assert names(states=[S.Activating]) == ["web-1", "web", "x"]
    assert names(states=[S.Activating, S.Pending]) == [i.name for i in made]
    assert names(states=[]) == []
    assert names(host_id=HostId(2)) == ["web-1", "x"]
    assert names(name="web") == ["web"]
    assert names(name_prefix="web") == ["web1", "web-1", "webx", "web", "web2", "web10"]
    assert names(name_prefix="web1") == ["web1", "web10"]
    assert names(name_prefix="we") == ["web1", "web-1", "webx", "we", "web", "web2", "wec", "web10"]
    assert names(ids=[ids[3], ids[0], InstanceId(999_999)]) == ["web1", "we"]
    assert names(ids=[]) == []
    assert names(after_id=ids[6]) == ["x", "wec", "web10"]
    assert names(limit=2) == ["web1", "web-1"]
    assert names(limit=0) == []
    assert names(user_id=alice, name_prefix="web", after_id=ids[0], limit=2) == ["webx", "web"]
    assert names(user_id=bob, states=[S.Activating], host_id=HostId(2)) == ["web-1", "x"]
    with store.transaction(write=False) as tx:
        assert tx.instances.count() == 10
        assert tx.instances.count(InstanceFilter(user_id=bob, limit=1)) == 5
        assert tx.instances.count(InstanceFilter(name_prefix="web", after_id=ids[4])) == 2


def test_find_returns_every_nic_of_every_instance_on_the_page_in_order(store: Store) -> None:
    owner = seed(store)
    nics = [
        tuple(NicConfig(NET if k % 2 else NET2, mac(10 * n + k)) for k in range(n))
        for n in range(4)
    ]
    made = [add(store, owner, spec(f"vm{n}", *nics[n])) for n in range(4)]
    assert [i.nics for i in find(store)] == nics
    assert [i.nics for i in find(store, after_id=made[0].id, limit=2)] == nics[1:3]
    assert [i.nics for i in find(store, ids=[made[3].id])] == [nics[3]]


def test_iterate_all_walks_every_page(store: Store) -> None:
    _, bob, made = populate(store)
    assert [i.id for i in iterate_all(store, page=3)] == [i.id for i in made]
    assert [i.user_id for i in iterate_all(store, InstanceFilter(user_id=bob), page=2)] == [bob] * 5


def test_macs_in_use_names_only_taken_macs(store: Store) -> None:
    owner = seed(store)
    add(store, owner, spec("a", NicConfig(NET, mac(1)), NicConfig(NET2, mac(2))))
    with store.transaction(write=False) as tx:
        assert tx.instances.macs_in_use([mac(2), mac(3)]) == {mac(2)}
        assert tx.instances.macs_in_use([]) == set()


# --- timestamps ------------------------------------------------------------------------------


def test_timestamps_come_back_aware_and_exact(store: Store) -> None:
    owner = seed(store)
    east = timezone(timedelta(hours=2))
    local = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=east)
    with store.transaction() as tx:
        inst = tx.instances.add(owner, spec("a"), unique_name=False, now=local)
        host = tx.hosts.add("h1", memory=1, cores=1, version="1", now=local)
        tx.hosts.update(host.id, last_heartbeat=local)
        user = tx.users.add("bob", role=Role.user, priority=0, password_hash="h", now=local)
    with store.transaction(write=False) as tx:
        stamps = [
            tx.instances.get(inst.id).created_at,
            tx.instances.get(inst.id).state_since,
            tx.hosts.get(host.id).last_heartbeat,
            tx.users.get(user.id).created_at,
        ]
    for stamp in stamps:
        assert stamp is not None and stamp.utcoffset() is not None
        assert stamp == local
        assert stamp.astimezone(UTC) == datetime(2024, 1, 2, 1, 4, 5, 678901, tzinfo=UTC)


def test_naive_timestamps_are_refused(store: Store) -> None:
    owner = seed(store)
    with pytest.raises(InvalidInput, match="time zone"), store.transaction() as tx:
        tx.instances.add(owner, spec("a"), unique_name=False, now=datetime(2024, 1, 1))
    assert find(store) == []


# --- hosts -----------------------------------------------------------------------------------


def test_hosts_register_with_fresh_ids_and_unique_names(store: Store) -> None:
    with store.transaction() as tx:
        a = tx.hosts.add("node1", memory=4096, cores=4, version="0.1", now=T0)
        b = tx.hosts.add("node2", memory=2048, cores=2, version="0.1", now=T0)
    assert a.id < b.id
    assert (a.state, a.up, a.decayed, a.reserved, a.config) == (
        HostState.Normal,
        False,
        False,
        (),
        {},
    )
    with pytest.raises(AlreadyExists, match="node1"), store.transaction() as tx:
        tx.hosts.add("node1", memory=1, cores=1, version="0.1", now=T0)
    with store.transaction(write=False) as tx:
        assert tx.hosts.get(a.id) == a
        assert tx.hosts.get_by_name("node2") == b
        assert tx.hosts.list() == [a, b]
        with pytest.raises(NotFound):
            tx.hosts.get(HostId(999_999))
        with pytest.raises(NotFound):
            tx.hosts.get_by_name("nope")


def test_host_state_is_compare_and_swap(store: Store) -> None:
    with store.transaction() as tx:
        host = tx.hosts.add("node1", memory=1, cores=1, version="1", now=T0)
        drained = tx.hosts.set_state(host.id, HostState.Normal, HostState.Drained)
    assert drained.state is HostState.Drained
    with pytest.raises(StateConflict, match="Drained"), store.transaction() as tx:
        tx.hosts.set_state(host.id, HostState.Normal, HostState.VersionMismatch)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.hosts.set_state(HostId(999_999), HostState.Normal, HostState.Drained)


def test_host_update_sets_only_the_given_fields(store: Store) -> None:
    with store.transaction() as tx:
        host = tx.hosts.add("node1", memory=1024, cores=2, version="1", now=T0)
        tx.hosts.update(host.id, notes="rack 4", config={"location": "eu"}, up=True)
        done = tx.hosts.update(host.id, memory=2048, load=0.5, last_heartbeat=T0, cpu_speed=2400)
        same = tx.hosts.update(host.id)
        tx.hosts.update(host.id, config={"isolation": "vm"}, decayed=True, version="2")
        final = tx.hosts.get(host.id)
    assert (done.notes, done.config, done.up, done.memory, done.cores) == (
        "rack 4", {"location": "eu"}, True, 2048, 2,
    )  # fmt: skip
    assert (done.load, done.last_heartbeat, done.cpu_speed) == (0.5, T0, 2400)
    assert same == done
    assert (final.config, final.decayed, final.version) == ({"isolation": "vm"}, True, "2")
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.hosts.update(HostId(999_999), notes="x")


def test_host_reservations_are_idempotent_and_go_with_the_host_or_user(store: Store) -> None:
    owner = seed(store)
    with store.transaction() as tx:
        bob = tx.users.add("bob", role=Role.user, priority=0, password_hash="h", now=T0).id
        host = tx.hosts.add("node1", memory=1, cores=1, version="1", now=T0)
        other = tx.hosts.add("node2", memory=1, cores=1, version="1", now=T0)
        tx.hosts.add_reservation(host.id, bob)
        tx.hosts.add_reservation(host.id, owner)
        twice = tx.hosts.add_reservation(host.id, bob)
        tx.hosts.add_reservation(other.id, bob)
    assert twice.reserved == (owner, bob)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.hosts.add_reservation(host.id, UserId(999_999))
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.hosts.add_reservation(HostId(999_999), bob)
    with store.transaction() as tx:
        assert tx.hosts.remove_reservation(host.id, owner).reserved == (bob,)
        assert tx.hosts.remove_reservation(host.id, owner).reserved == (bob,)
        tx.users.remove(bob)
        assert [h.reserved for h in tx.hosts.list()] == [(), ()]


def test_removing_a_host_keeps_its_instances_host_id(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    with store.transaction() as tx:
        host = tx.hosts.add("node1", memory=1, cores=1, version="1", now=T0)
        tx.hosts.add_reservation(host.id, owner)
        tx.instances.transition(
            inst.id, S.Pending, S.Activating, now=T0, changes=InstanceChanges(host_id=host.id)
        )
        tx.hosts.remove(host.id)
    with store.transaction(write=False) as tx:
        assert tx.instances.get(inst.id).host_id == host.id
        assert tx.hosts.list() == []
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.hosts.remove(host.id)


# --- networks, users, tokens -----------------------------------------------------------------


def test_network_ids_are_chosen_by_the_admin_and_ids_and_names_are_unique(store: Store) -> None:
    with store.transaction() as tx:
        tx.networks.add(NetworkId(7), "seven")
        tx.networks.add(NetworkId(3), "three")
    with pytest.raises(AlreadyExists, match="7"), store.transaction() as tx:
        tx.networks.add(NetworkId(7), "other")
    with pytest.raises(AlreadyExists, match="three"), store.transaction() as tx:
        tx.networks.add(NetworkId(8), "three")
    with store.transaction(write=False) as tx:
        assert [(n.id, n.name) for n in tx.networks.list()] == [(3, "three"), (7, "seven")]
        assert tx.networks.get(NetworkId(7)).name == "seven"
        with pytest.raises(NotFound):
            tx.networks.get(NetworkId(8))


def test_users_have_unique_names_and_keep_their_password_hash(store: Store) -> None:
    with store.transaction() as tx:
        admin = tx.users.add("root", role=Role.admin, priority=5, password_hash="h1", now=T0)
        agent = tx.users.add("sched", role=Role.agent, priority=0, password_hash="h2", now=T0)
    assert (admin.role, admin.priority, admin.created_at) == (Role.admin, 5, T0)
    with pytest.raises(AlreadyExists, match="root"), store.transaction() as tx:
        tx.users.add("root", role=Role.user, priority=0, password_hash="x", now=T0)
    with store.transaction() as tx:
        assert tx.users.get(admin.id) == admin
        assert tx.users.get_by_name("sched") == agent
        assert tx.users.list() == [admin, agent]
        assert tx.users.password_hash(agent.id) == "h2"
        tx.users.set_password_hash(agent.id, "h3")
        tx.users.set_password_hash(agent.id, "h3")
        assert tx.users.password_hash(agent.id) == "h3"
        for call in (
            lambda: tx.users.get(UserId(999_999)),
            lambda: tx.users.get_by_name("nobody"),
            lambda: tx.users.password_hash(UserId(999_999)),
            lambda: tx.users.set_password_hash(UserId(999_999), "x"),
        ):
            with pytest.raises(NotFound):
                call()
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.users.remove(UserId(999_999))


def test_tokens_expire_are_purged_and_go_with_their_user(store: Store) -> None:
    owner = seed(store)
    with store.transaction() as tx:
        bob = tx.users.add("bob", role=Role.agent, priority=0, password_hash="h", now=T0).id
        tx.tokens.add("t-alice", owner, expires=T0 + timedelta(hours=1))
        tx.tokens.add("t-old", owner, expires=T0)
        tx.tokens.add("t-bob", bob, expires=T0 + timedelta(hours=1))
    with store.transaction() as tx:
        who = tx.tokens.principal("t-alice", now=T0)
        assert who is not None and (who.user_id, who.name, who.role) == (owner, "alice", Role.user)
        assert tx.tokens.principal("t-old", now=T0) is None  # expires at T0: no longer valid
        assert tx.tokens.principal("t-alice", now=T0 + timedelta(hours=1)) is None
        assert tx.tokens.principal("nope", now=T0) is None
        assert tx.tokens.purge_expired(T0) == 1
        assert tx.tokens.purge_expired(T0) == 0
        tx.tokens.remove("t-alice")
        tx.tokens.remove("t-alice")
        assert tx.tokens.principal("t-alice", now=T0) is None
        tx.users.remove(bob)
        assert tx.tokens.principal("t-bob", now=T0) is None
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.tokens.add("t-ghost", UserId(999_999), expires=T0)
    with store.transaction() as tx:
        tx.tokens.add("t-dup", owner, expires=T0 + timedelta(hours=1))
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.tokens.add("t-dup", owner, expires=T0 + timedelta(hours=2))


# --- concurrency -----------------------------------------------------------------------------


def test_two_threads_racing_to_transition_one_instance_exactly_one_wins(store: Store) -> None:
    owner = seed(store)
    targets = [add(store, owner, spec(f"vm{n}")) for n in range(8)]
    for inst in targets:
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def activate(
            host: int,
            iid: InstanceId = inst.id,
            barrier: threading.Barrier = barrier,
            outcomes: list[str] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                with store.transaction() as tx:
                    tx.instances.get(iid)  # read first: the race a check-then-act would lose
                    tx.instances.transition(
                        iid, S.Pending, S.Activating, now=T0,
                        changes=InstanceChanges(host_id=HostId(host)),
                    )  # fmt: skip
                outcomes.append(f"won:{host}")
            except StateConflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=activate, args=(h,)) for h in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert sorted(outcomes)[0] == "conflict" and len(outcomes) == 2, outcomes
        winner = int(sorted(outcomes)[1].split(":")[1])
        assert get(store, inst.id).host_id == winner


def test_adopt_keeps_the_id_and_later_ids_stay_above_it(store: Store) -> None:
    owner = seed(store)
    first = add(store, owner, spec("a"))
    stray = Instance(
        id=InstanceId(first.id + 50),
        name="stray",
        user_id=owner,
        state=InstanceState.Running,
        cores=1,
        memory=64,
        disks=(DiskConfig("img.qcow2"),),
        host_id=None,
        vm_id=4242,
        nics=(NicConfig(network=NET, mac="52:54:00:00:aa:01"),),
    )
    with store.transaction() as tx:
        adopted = tx.instances.adopt(stray, unique_name=True, now=T0)
    assert (adopted.id, adopted.state, adopted.vm_id) == (stray.id, InstanceState.Running, 4242)
    with store.transaction(write=False) as tx:
        assert tx.instances.get(stray.id).nics[0].mac == "52:54:00:00:aa:01"
    later = add(store, owner, spec("b"))
    assert later.id > stray.id
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.instances.adopt(stray, unique_name=False, now=T0)
