"""The store contract, continued: node links, host leases, the instance history, host usage.

Part of the one contract suite: every test takes the ``store``/``backend`` fixture of
``conftest.py`` and so runs on the in-memory fake, SQLite, PostgreSQL and MariaDB, like
``test_contract.py`` (whose helpers it shares). The last test reads SQLite's plans for the usage
queries: the covering index is what keeps the scheduler's snapshot cheap at 100,000 instances, and
activateVm's claim cheap on a busy host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from tashi.domain.errors import InvalidInput, NotFound
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import Role, Usage
from tashi.domain.nodes import Renewal
from tashi.domain.states import InstanceState
from tashi.domain.witnesses import WitnessSets
from tashi.storage.contract import (
    ENDPOINT_MAX,
    EVENT_KIND_MAX,
    EVENT_MESSAGE_MAX,
    SECRET_MAX,
    InstanceChanges,
    Store,
)
from tashi.storage.sql import SqlStore, make_engine, upgrade
from tests.fixtures.dbservers import FreshDatabase
from tests.storage.conftest import Backend
from tests.storage.test_contract import T0, add, seed, spec

S = InstanceState
EAST = timezone(timedelta(hours=2))


def node_user(store: Store, name: str = "node-agent") -> UserId:
    with store.transaction() as tx:
        return tx.users.add(name, role=Role.node, priority=0, password_hash="h", now=T0).id


def hosts(store: Store, *names: str) -> list[HostId]:
    with store.transaction() as tx:
        return [tx.hosts.add(n, memory=8192, cores=8, version="1", now=T0).id for n in names]


# --- node links ------------------------------------------------------------------------------


def test_a_node_link_is_inserted_then_replaced_and_reads_back_equal(store: Store) -> None:
    first_user, second_user = node_user(store, "node1"), node_user(store, "node1-again")
    h1, h2, h3 = hosts(store, "node1", "node2", "node3")
    later = datetime(2024, 5, 2, 8, 30, 0, 654321, tzinfo=EAST)
    with store.transaction() as tx:
        assert tx.hosts.link(h1) is None and tx.hosts.links() == {}
        made = tx.hosts.set_link(
            h1, endpoint="http://10.0.0.1:9883", secret="s3cret-1", user_id=first_user, now=T0
        )
        other = tx.hosts.set_link(
            h3, endpoint="http://10.0.0.3:9883", secret="s3cret-3", user_id=first_user, now=T0
        )
    assert (made.host_id, made.endpoint, made.secret, made.user_id) == (
        h1, "http://10.0.0.1:9883", "s3cret-1", first_user,
    )  # fmt: skip
    assert made.registered_at == T0
    with store.transaction() as tx:
        assert tx.hosts.link(h1) == made
        replaced = tx.hosts.set_link(
            h1, endpoint="http://10.0.0.9:9883", secret="s3cret-2", user_id=second_user, now=later
        )
    with store.transaction(write=False) as tx:
        again = tx.hosts.link(h1)
        assert again == replaced
        assert again is not None and again.registered_at.utcoffset() is not None
        assert (again.endpoint, again.secret, again.user_id, again.registered_at) == (
            "http://10.0.0.9:9883", "s3cret-2", second_user, later,
        )  # fmt: skip
        assert tx.hosts.link(h2) is None
        assert tx.hosts.link(HostId(999_999)) is None
        links = tx.hosts.links()
    assert list(links) == [h1, h3] and links == {h1: replaced, h3: other}


def test_witness_sets_are_kept_when_the_node_registers_again(store: Store) -> None:
    user = node_user(store)
    h1, h2, h3 = hosts(store, "node1", "node2", "node3")
    sets = WitnessSets().with_current([h2, h3]).acknowledge(1).with_current([h3])
    with store.transaction() as tx:
        tx.hosts.set_link(
            h1, endpoint="http://n1", secret="s" * 32, user_id=user, now=T0, peer_secret="p" * 32
        )
        tx.hosts.set_witnesses(h1, sets)
    with store.transaction() as tx:
        again = tx.hosts.set_link(
            h1, endpoint="http://n1b", secret="t" * 32, user_id=user, now=T0, peer_secret="q" * 32
        )
        assert again.witnesses == sets and again.peer_secret == "q" * 32
    with store.transaction(write=False) as tx:
        link = tx.hosts.link(h1)
        assert link is not None and link.witnesses == sets and link.endpoint == "http://n1b"
        assert link.witnesses.voters() == {h2, h3} and not link.witnesses.settled()
        assert tx.hosts.links()[h1] == link
        assert "q" * 32 not in repr(link)
    with store.transaction() as tx, pytest.raises(NotFound):
        tx.hosts.set_witnesses(h2, WitnessSets())  # h2 has no link


def test_the_secret_stays_out_of_a_links_repr(store: Store) -> None:
    user = node_user(store)
    (host,) = hosts(store, "node1")
    with store.transaction() as tx:
        link = tx.hosts.set_link(
            host, endpoint="http://n1:9883", secret="hunter2-secret", user_id=user, now=T0
        )
    assert "hunter2-secret" not in repr(link) and "hunter2-secret" not in str(link)
    assert "http://n1:9883" in repr(link)


def test_a_link_needs_a_known_host_and_user_and_sane_text(store: Store) -> None:
    user = node_user(store)
    (host,) = hosts(store, "node1")

    def set_link(**change: Any) -> None:
        fields: dict[str, Any] = {
            "host_id": host, "endpoint": "http://n1:9883", "secret": "s", "user_id": user,
            "now": T0,
        }  # fmt: skip
        fields.update(change)
        with store.transaction() as tx:
            tx.hosts.set_link(fields.pop("host_id"), **fields)

    with pytest.raises(NotFound, match="host"):
        set_link(host_id=HostId(999_999))
    with pytest.raises(NotFound, match="user"):
        set_link(user_id=UserId(999_999))
    for bad in (
        {"endpoint": ""},
        {"endpoint": "h" * (ENDPOINT_MAX + 1)},
        {"secret": ""},
        {"secret": "x" * (SECRET_MAX + 1)},
        {"now": datetime(2024, 1, 1)},
    ):
        with pytest.raises(InvalidInput):
            set_link(**bad)
    with pytest.raises(InvalidInput) as refused:
        set_link(secret="y" * (SECRET_MAX + 1))
    assert "yyyy" not in str(refused.value)  # a refused secret is not echoed
    with store.transaction(write=False) as tx:
        assert tx.hosts.links() == {}
    set_link(endpoint="h" * ENDPOINT_MAX, secret="x" * SECRET_MAX)  # the limits themselves fit
    with store.transaction(write=False) as tx:
        kept = tx.hosts.link(host)
    assert kept is not None
    assert (kept.endpoint, kept.secret) == ("h" * ENDPOINT_MAX, "x" * SECRET_MAX)


def test_links_go_with_their_host_or_their_node_user(store: Store) -> None:
    owner = seed(store)
    first, second = node_user(store, "n1"), node_user(store, "n2")
    h1, h2, h3 = hosts(store, "node1", "node2", "node3")
    with store.transaction() as tx:
        for host, user in ((h1, first), (h2, first), (h3, second)):
            tx.hosts.set_link(host, endpoint=f"http://h{host}", secret="s", user_id=user, now=T0)
        tx.hosts.add_reservation(h3, owner)
    with store.transaction() as tx:
        tx.hosts.remove(h1)
        assert list(tx.hosts.links()) == [h2, h3]
        tx.users.remove(first)
        assert list(tx.hosts.links()) == [h3]
        assert tx.hosts.link(h2) is None and tx.hosts.get(h2).name == "node2"
    (h4,) = hosts(store, "node1")  # a host registered again under the old name starts unlinked
    with store.transaction(write=False) as tx:
        assert tx.hosts.link(h4) is None
        assert tx.hosts.get(h3).reserved == (owner,)


# --- host leases -----------------------------------------------------------------------------


def test_a_host_lease_round_trips_aware_and_update_keeps_other_fields(store: Store) -> None:
    (host,) = hosts(store, "node1")
    lease = datetime(2024, 5, 1, 14, 0, 30, 250000, tzinfo=EAST)
    with store.transaction() as tx:
        assert tx.hosts.get(host).lease_expires is None
        tx.hosts.update(host, notes="rack 4", last_heartbeat=T0)
        leased = tx.hosts.update(host, lease_expires=lease)
        untouched = tx.hosts.update(host, load=0.25)
    with store.transaction(write=False) as tx:
        stored = tx.hosts.get(host)
        listed = tx.hosts.list()
    assert leased.lease_expires == lease and (leased.notes, leased.last_heartbeat) == ("rack 4", T0)
    assert untouched.lease_expires == lease and untouched.load == 0.25
    assert stored == untouched and listed == [stored]
    assert stored.lease_expires is not None and stored.lease_expires.utcoffset() is not None
    assert stored.lease_expires.astimezone(UTC) == datetime(2024, 5, 1, 12, 0, 30, 250000, UTC)
    renewed = lease + timedelta(seconds=10)
    with store.transaction() as tx:
        assert tx.hosts.update(host, lease_expires=renewed).lease_expires == renewed
    with pytest.raises(InvalidInput, match="time zone"), store.transaction() as tx:
        tx.hosts.update(host, lease_expires=datetime(2024, 5, 1, 12))
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.hosts.update(HostId(999_999), lease_expires=renewed)
    with store.transaction(write=False) as tx:
        assert tx.hosts.get(host).lease_expires == renewed


def test_renew_records_many_hosts_liveness_at_once_and_names_those_not_up(store: Store) -> None:
    up, down, other = hosts(store, "node1", "node2", "node3")
    lease = datetime(2024, 5, 1, 14, 0, 30, tzinfo=EAST)
    later = T0 + timedelta(seconds=10)
    with store.transaction() as tx:
        tx.hosts.update(up, up=True, decayed=True, lease_expires=lease, load=3.0)
        tx.hosts.update(other, up=True, notes="kept", lease_expires=lease)
        gone = tx.hosts.renew(
            [
                Renewal(up, later, 0.5, lease + timedelta(seconds=10)),
                Renewal(down, later, None, None),
                Renewal(other, later, 1.5, None),  # HA off: the lease stays as it is
                Renewal(HostId(999_999), later, 1.0, None),
            ]
        )
        assert tx.hosts.renew([]) == set()
    assert gone == {down, HostId(999_999)}
    with store.transaction(write=False) as tx:
        first, second, third = (tx.hosts.get(h) for h in (up, down, other))
    assert (first.last_heartbeat, first.load, first.decayed) == (later, 0.5, False)
    assert first.lease_expires == lease + timedelta(seconds=10) and first.up
    assert (second.last_heartbeat, second.load, second.up) == (later, None, False)
    assert (third.lease_expires, third.load, third.notes) == (lease, 1.5, "kept")
    with pytest.raises(InvalidInput, match="time zone"), store.transaction() as tx:
        tx.hosts.renew([Renewal(up, datetime(2024, 5, 1, 12), None, None)])


def test_silent_and_lapsed_hosts_are_found_by_their_clocks(store: Store) -> None:
    never, old, fresh, down_over, down_later, down_unleased = hosts(
        store, "never", "old", "fresh", "down-over", "down-later", "down-unleased"
    )
    cut = T0 + timedelta(seconds=30)
    with store.transaction() as tx:
        tx.hosts.update(never, up=True)
        tx.hosts.update(old, up=True, last_heartbeat=T0, lease_expires=T0)
        tx.hosts.update(fresh, up=True, last_heartbeat=cut, lease_expires=T0)
        tx.hosts.update(down_over, last_heartbeat=T0, lease_expires=cut)  # exactly at the cut
        tx.hosts.update(down_later, last_heartbeat=T0, lease_expires=cut + timedelta(seconds=1))
        tx.hosts.update(down_unleased, last_heartbeat=T0)
    with store.transaction(write=False) as tx:
        assert [h.id for h in tx.hosts.silent(cut)] == [never, old]
        assert [h.id for h in tx.hosts.lapsed(cut)] == [down_over]
        assert tx.hosts.silent(T0) == [tx.hosts.get(never)]
        assert tx.hosts.lapsed(T0) == []
        assert tx.hosts.up_ids() == [never, old, fresh]


# --- the instance history --------------------------------------------------------------------


def history(store: Store, iid: InstanceId, limit: int = 100) -> list[tuple[str, str]]:
    with store.transaction(write=False) as tx:
        return [(e.kind, e.message) for e in tx.events.list(iid, limit=limit)]


def test_events_come_back_oldest_first_per_instance_and_limit_keeps_the_newest(
    store: Store,
) -> None:
    owner = seed(store)
    a, b = add(store, owner, spec("a")), add(store, owner, spec("b"))
    with store.transaction() as tx:
        made = [
            tx.events.add(iid, "state", f"{iid}:{n}", now=T0 + timedelta(seconds=-n))
            for n in range(5)
            for iid in (a.id, b.id)
        ]
    assert [e.id for e in made] == sorted({e.id for e in made})  # fresh and increasing
    mine = [e for e in made if e.instance_id == a.id]
    with store.transaction(write=False) as tx:
        assert tx.events.list(a.id) == mine  # id order, although ``at`` runs backwards
        assert tx.events.list(a.id, limit=2) == mine[-2:]
        assert tx.events.list(a.id, limit=0) == []
        assert tx.events.list(InstanceId(999_999)) == []
        with pytest.raises(InvalidInput):
            tx.events.list(a.id, limit=-1)
    assert history(store, b.id, limit=3) == [("state", f"{b.id}:{n}") for n in (2, 3, 4)]
    assert [e.at for e in mine] == [T0 - timedelta(seconds=n) for n in range(5)]
    assert all(e.at.utcoffset() is not None for e in mine)


def test_event_kind_is_a_short_word_and_a_long_message_is_cut(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    at = datetime(2024, 5, 1, 9, 0, 0, 1, tzinfo=EAST)
    long = "é" * (EVENT_MESSAGE_MAX + 10)
    with store.transaction() as tx:
        tx.events.add(inst.id, "k" * EVENT_KIND_MAX, "", now=at)
        cut = tx.events.add(inst.id, "migrated", long, now=at)
    assert cut.message == "é" * (EVENT_MESSAGE_MAX - 1) + "…"
    with store.transaction(write=False) as tx:
        kept = tx.events.list(inst.id)
    assert [(e.kind, e.message) for e in kept] == [
        ("k" * EVENT_KIND_MAX, ""),
        ("migrated", cut.message),
    ]
    assert kept[1] == cut and kept[1].at == at
    for kind, now in (("", T0), ("k" * (EVENT_KIND_MAX + 1), T0), ("state", datetime(2024, 1, 1))):
        with pytest.raises(InvalidInput), store.transaction() as tx:
            tx.events.add(inst.id, kind, "x", now=now)
    assert len(history(store, inst.id)) == 2


def test_history_outlives_its_instance_and_may_name_one_never_stored(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))
    with store.transaction() as tx:
        tx.events.add(inst.id, "created", "by alice", now=T0)
        tx.instances.remove(inst.id, S.Pending)
        tx.events.add(inst.id, "destroyed", "removed", now=T0)  # written as it goes
        tx.events.add(InstanceId(999_999), "adopted", "reported by node1", now=T0)
    assert history(store, inst.id) == [("created", "by alice"), ("destroyed", "removed")]
    assert history(store, InstanceId(999_999)) == [("adopted", "reported by node1")]


def test_event_ids_are_never_reused_after_a_purge_and_a_reopen(backend: Backend) -> None:
    owner = seed(backend.store)
    inst = add(backend.store, owner, spec("a"))
    with backend.store.transaction() as tx:
        tx.events.add(inst.id, "state", "old", now=T0 - timedelta(days=30))
        top = tx.events.add(inst.id, "state", "newest", now=T0)
        assert tx.events.purge_before(T0 + timedelta(seconds=1)) == 2
    store = backend.reopen()
    with store.transaction() as tx:
        newer = tx.events.add(inst.id, "state", "after", now=T0)
    assert newer.id > top.id
    assert history(store, inst.id) == [("state", "after")]


def test_purge_before_deletes_strictly_earlier_events_and_counts_them(store: Store) -> None:
    owner = seed(store)
    a, b = add(store, owner, spec("a")), add(store, owner, spec("b"))
    with store.transaction() as tx:
        for n in range(4):
            tx.events.add(a.id, "state", f"a{n}", now=T0 + timedelta(hours=n))
            tx.events.add(b.id, "state", f"b{n}", now=T0 + timedelta(hours=n))
    cut = (T0 + timedelta(hours=2)).astimezone(EAST)  # the same instant in another zone
    with store.transaction() as tx:
        assert tx.events.purge_before(cut) == 4
        assert tx.events.purge_before(cut) == 0
    assert history(store, a.id) == [("state", "a2"), ("state", "a3")]
    assert history(store, b.id) == [("state", "b2"), ("state", "b3")]
    with pytest.raises(InvalidInput), store.transaction() as tx:
        tx.events.purge_before(datetime(2024, 1, 1))


def test_purge_beyond_keeps_the_newest_events_of_each_instance(store: Store) -> None:
    owner = seed(store)
    a, b = add(store, owner, spec("a")), add(store, owner, spec("b"))
    gone = InstanceId(999_999)  # history outlives its instance, and is trimmed alike
    with store.transaction() as tx:
        for n in range(5):  # each one earlier than the last: newest means last added
            tx.events.add(a.id, "state", f"a{n}", now=T0 - timedelta(hours=n))
            tx.events.add(gone, "state", f"g{n}", now=T0)
        for n in range(2):
            tx.events.add(b.id, "state", f"b{n}", now=T0)
    with store.transaction() as tx:
        assert tx.events.purge_beyond(2) == 6
        assert tx.events.purge_beyond(2) == 0
    assert history(store, a.id) == [("state", "a3"), ("state", "a4")]
    assert history(store, b.id) == [("state", "b0"), ("state", "b1")]
    assert history(store, gone) == [("state", "g3"), ("state", "g4")]
    with store.transaction() as tx:
        assert tx.events.purge_beyond(0) == 6
    assert [history(store, i) for i in (a.id, b.id, gone)] == [[], [], []]
    with pytest.raises(InvalidInput), store.transaction() as tx:
        tx.events.purge_beyond(-1)


def test_event_ids_are_never_reused_after_purging_all_but_none(backend: Backend) -> None:
    owner = seed(backend.store)
    inst = add(backend.store, owner, spec("a"))
    with backend.store.transaction() as tx:
        top = tx.events.add(inst.id, "state", "newest", now=T0)
        assert tx.events.purge_beyond(0) == 1
    store = backend.reopen()
    with store.transaction() as tx:
        assert tx.events.add(inst.id, "state", "after", now=T0).id > top.id


def test_an_event_in_a_failed_unit_is_not_kept(store: Store) -> None:
    owner = seed(store)
    inst = add(store, owner, spec("a"))

    def record_then_fail() -> None:
        with store.transaction() as tx:
            tx.events.add(inst.id, "state", "never", now=T0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        record_then_fail()
    assert history(store, inst.id) == []


# --- host usage ------------------------------------------------------------------------------


def place(
    store: Store, owner: UserId, name: str, host: int | None, state: S, cores: int = 1,
    memory: int = 256,
) -> None:  # fmt: skip
    inst = add(store, owner, replace(spec(name), cores=cores, memory=memory))
    changes = InstanceChanges(host_id=HostId(host)) if host is not None else None
    with store.transaction() as tx:
        tx.instances.transition(inst.id, S.Pending, state, now=T0, changes=changes)


def test_usage_by_host_covers_only_the_given_states_and_placed_instances(
    store: Store,
) -> None:
    owner = seed(store)
    place(store, owner, "r1", 2, S.Running, cores=2, memory=1024)
    place(store, owner, "r2", 2, S.Running, cores=4, memory=2048)
    place(store, owner, "a1", 2, S.Activating)
    place(store, owner, "m1", 5, S.MigrateTrans, cores=3, memory=512)
    place(store, owner, "r3", 1, S.Running)
    place(store, owner, "h1", None, S.Held)  # no host: never counted
    place(store, owner, "p1", None, S.Running)  # a host cleared: never counted
    add(store, owner, spec("pending"))
    place(store, owner, "x1", 7, S.Exited, cores=8, memory=8192)
    with store.transaction(write=False) as tx:
        running = tx.instances.usage_by_host([S.Running])
        live = tx.instances.usage_by_host([S.Running, S.Activating, S.MigrateTrans, S.Held])
        none = tx.instances.usage_by_host([])
        pending = tx.instances.usage_by_host([S.Pending])
    assert running == {1: Usage(1, 256, 1), 2: Usage(2, 3072, 6)}
    assert list(running) == [1, 2]
    assert live == {1: Usage(1, 256, 1), 2: Usage(3, 3328, 7), 5: Usage(1, 512, 3)}
    assert list(live) == [1, 2, 5]
    assert none == {} and pending == {}
    assert all(type(v) is int for u in live.values() for v in (u.instances, u.memory, u.cores))


def test_usage_on_one_host_sums_only_its_instances_in_the_given_states(store: Store) -> None:
    owner = seed(store)
    place(store, owner, "r1", 2, S.Running, cores=2, memory=1024)
    place(store, owner, "r2", 2, S.Running, cores=4, memory=2048)
    place(store, owner, "a1", 2, S.Activating)
    place(store, owner, "x1", 2, S.Exited, cores=8, memory=8192)
    place(store, owner, "r3", 1, S.Running)
    place(store, owner, "p1", None, S.Running)  # no host: never counted
    with store.transaction(write=False) as tx:
        running = tx.instances.usage_on_host(HostId(2), [S.Running])
        live = tx.instances.usage_on_host(HostId(2), [S.Running, S.Activating, S.Held])
        other = tx.instances.usage_on_host(HostId(1), [S.Running, S.Activating])
        empty = tx.instances.usage_on_host(HostId(3), [S.Running])
        none = tx.instances.usage_on_host(HostId(2), [])
    assert running == Usage(2, 3072, 6)
    assert live == Usage(3, 3328, 7)
    assert other == Usage(1, 256, 1)
    assert empty == Usage() and none == Usage()
    assert all(type(v) is int for v in (live.instances, live.memory, live.cores))


@pytest.mark.parametrize("one_host", [False, True], ids=["by_host", "on_host"])
def test_usage_is_summed_in_one_query_over_the_covering_index(
    fresh_database: Callable[[str], FreshDatabase], one_host: bool
) -> None:
    url = fresh_database("sqlite").url
    upgrade(url)
    store = SqlStore(make_engine(url))
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        with store.transaction(write=False) as tx:
            seen.clear()
            if one_host:
                tx.instances.usage_on_host(HostId(3), [S.Running, S.Activating])
            else:
                tx.instances.usage_by_host([S.Running, S.Activating])
        (statement, params), *others = [(s, p) for s, p in seen if s.startswith("SELECT")]
        with store.engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    finally:
        store.close()
    assert others == []
    assert any("COVERING INDEX ix_instances_usage" in row[-1] for row in plan), plan
