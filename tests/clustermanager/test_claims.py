"""activateVm's claims: capacity, host state and reservations checked in the placing transaction,
and never an over-committed host when many activations race (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tashi.clustermanager import refs
from tashi.clustermanager.service import build_service
from tashi.domain.errors import (
    Forbidden,
    InsufficientResources,
    InvalidState,
    StateConflict,
    TashiError,
)
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import Host, Instance
from tashi.domain.operations import DiskRequest, VmRequest
from tashi.domain.states import HostState, InstanceState
from tashi.storage.contract import InstanceChanges, InstanceFilter, Store, Transaction
from tashi.storage.memory import MemoryStore
from tashi.storage.sql import SqlStore, make_engine, upgrade
from tests.api.conftest import make_settings
from tests.clustermanager.fakenodes import Cluster, FakeNodes, cluster
from tests.fixtures.dbservers import FreshDatabase

S = InstanceState


def create(c: Cluster, name: str, memory: int = 256, cores: int = 1) -> Instance:
    request = VmRequest(name=name, disks=[DiskRequest("base.qcow2")], memory=memory, cores=cores)
    return c.run(c.service.instances.create_vm(c.alice, request))


def activate(c: Cluster, inst: Instance, host: str) -> Instance:
    return c.run(c.service.instances.activate_vm(c.agent, str(inst.id), host))


def test_a_host_takes_instances_until_its_memory_is_used(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=1, memory=1024, cores=8)
    for n in range(4):
        assert activate(c, create(c, f"vm{n}"), "h1").state is S.Running
    fifth = create(c, "vm4")
    with pytest.raises(InsufficientResources, match="0 MB of memory free"):
        activate(c, fifth, "h1")
    assert c.instance(fifth.id).state is S.Pending and c.instance(fifth.id).host_id is None


def test_cores_are_claimed_and_over_rates_allow_over_commit(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=1, memory=8192, cores=2, cpu_cores_over_rate=1.5)
    activate(c, create(c, "a", cores=2), "h1")
    with pytest.raises(InsufficientResources, match=r"1 cores free .*cpuCoresOverRate 1\.5"):
        activate(c, create(c, "b", cores=2), "h1")
    assert activate(c, create(c, "c", cores=1), "h1").state is S.Running
    d = cluster(tmp_path / "d", MemoryStore(), hosts=1, memory=512, memory_over_rate=2.0)
    activate(d, create(d, "a", memory=600), "h1")
    assert activate(d, create(d, "b", memory=424), "h1").state is S.Running
    with pytest.raises(InsufficientResources, match="memoryOverRate 2"):
        activate(d, create(d, "c", memory=1), "h1")


def test_every_state_that_holds_a_host_counts_orphaned_included(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=1, memory=1024, cores=8)
    held = [create(c, f"vm{n}") for n in range(4)]
    for inst, state in zip(held, (S.Activating, S.PreparingDisk, S.ShuttingDown), strict=False):
        _place(c, inst, c.hosts[0], state)
    _place(c, held[3], c.hosts[0], S.Running)
    c.run(c.service.db.write(lambda tx: _orphan(tx, held[3].id)))
    with pytest.raises(InsufficientResources):
        activate(c, create(c, "late"), "h1")
    c.run(c.service.instances.destroy_vm(c.admin, str(held[0].id), force=True))
    assert activate(c, create(c, "later"), "h1").state is S.Running


def _place(c: Cluster, inst: Instance, host: HostId, state: InstanceState) -> None:
    now = c.clock.now()
    changes = InstanceChanges(host_id=host)
    c.run(
        c.service.db.write(
            lambda tx: tx.instances.transition(inst.id, S.Pending, state, now=now, changes=changes)
        )
    )


def _orphan(tx: Transaction, iid: InstanceId) -> None:
    tx.instances.transition(iid, S.Running, S.Orphaned, now=datetime.now(UTC))


def test_down_drained_and_reserved_hosts_refuse(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=3)
    h1, h2, h3 = c.hosts
    c.run(c.service.db.write(lambda tx: tx.hosts.update(h1, up=False)))
    c.run(
        c.service.db.write(lambda tx: tx.hosts.set_state(h2, HostState.Normal, HostState.Drained))
    )
    c.run(c.service.db.write(lambda tx: tx.hosts.add_reservation(h3, c.admin.user_id)))
    inst = create(c, "vm")
    with pytest.raises(InvalidState, match="down"):
        activate(c, inst, "h1")
    with pytest.raises(InvalidState, match="Drained"):
        activate(c, inst, "h2")
    with pytest.raises(Forbidden, match="reserved"):
        activate(c, inst, "h3")
    assert c.instance(inst.id).state is S.Pending


def test_a_host_that_goes_down_after_the_read_is_refused_by_the_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks run again under the lock: the pre-check's read is not trusted. (On
    PostgreSQL/MariaDB the host's row may change between that read and the lock.)"""
    c = cluster(tmp_path, MemoryStore(), hosts=1)
    inst = create(c, "vm")
    c.run(c.service.db.write(lambda tx: tx.hosts.update(c.hosts[0], up=False)))
    real = refs.host

    def read_before_it_went_down(tx: Transaction, ref: str) -> Host:
        return replace(real(tx, ref), up=True)

    monkeypatch.setattr(refs, "host", read_before_it_went_down)
    with pytest.raises(InvalidState, match="down"):
        activate(c, inst, "h1")
    assert c.instance(inst.id).state is S.Pending


def test_one_instance_is_placed_once_when_two_schedulers_race(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=2)
    c.nodes.start_delay = 0.01
    inst = create(c, "vm")

    async def both() -> list[Instance | BaseException]:
        return await asyncio.gather(
            c.service.instances.activate_vm(c.agent, str(inst.id), "h1"),
            c.service.instances.activate_vm(c.agent, str(inst.id), "h2"),
            return_exceptions=True,
        )

    results = c.run(both())
    won = [r for r in results if isinstance(r, Instance)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], InvalidState | StateConflict)
    assert sum(len(v) for v in c.nodes.running.values()) == 1


# --- many activations racing, over every store ------------------------------------------------

HOSTS = 3
PER_HOST = 3  # 1024 MB hosts, 300 MB instances
INSTANCES = 24


def _stores(kind: str, fresh: Callable[[str], FreshDatabase]) -> tuple[Store, Store]:
    if kind == "memory":
        store = MemoryStore()
        return store, store
    url = fresh(kind).url
    upgrade(url)
    return SqlStore(make_engine(url)), SqlStore(make_engine(url))


@pytest.mark.parametrize(
    "kind", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_concurrent_activations_never_over_commit_a_host(
    tmp_path: Path, kind: str, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    """Two cluster-manager services on one database (two schedulers each) race to activate 24
    instances on 3 hosts with room for 3 each: exactly 9 are placed, 3 per host."""
    first, second = _stores(kind, fresh_database)
    a = cluster(tmp_path / "a", first, hosts=HOSTS, memory=1024, cores=8)
    b_nodes = FakeNodes(running=a.nodes.running)
    b_service = build_service(
        make_settings(tmp_path / "b"),
        second,
        clock=a.clock,
        nodes=lambda db: b_nodes,  # type: ignore[arg-type,return-value]
    )
    a.nodes.start_delay = b_nodes.start_delay = 0.005
    made = [create(a, f"vm{n}", memory=300) for n in range(INSTANCES)]

    async def race() -> list[Instance | BaseException]:
        tries = []
        for n, inst in enumerate(made):
            service = (a.service, b_service)[n % 2]
            for host in ("h1", "h2", "h3")[n % HOSTS :] + ("h1", "h2", "h3")[: n % HOSTS]:
                tries.append(service.instances.activate_vm(a.agent, str(inst.id), host))
        return await asyncio.gather(*tries, return_exceptions=True)

    try:
        results = a.run(race())
        unexpected = [
            r for r in results if isinstance(r, BaseException) and not isinstance(r, TashiError)
        ]
        assert not unexpected, unexpected
        placed = a.run(
            a.service.db.read(lambda tx: tx.instances.find(InstanceFilter(states=[S.Running])))
        )
        per_host: dict[HostId | None, int] = {}
        for inst in placed:
            per_host[inst.host_id] = per_host.get(inst.host_id, 0) + 1
        assert per_host == {h: PER_HOST for h in a.hosts}
        assert sum(len(v) for v in a.nodes.running.values()) == HOSTS * PER_HOST
        assert sum(isinstance(r, Instance) for r in results) == HOSTS * PER_HOST
    finally:
        if kind != "memory":
            b_service.close()
            a.service.close()


def test_migrate_vm_claims_room_on_its_target(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=2, memory=8192, cores=2)
    c.nodes.migration_gate = asyncio.Event()
    mover = activate(c, create(c, "mover", cores=2), "h1")
    activate(c, create(c, "big", cores=2), "h2")
    with pytest.raises(InsufficientResources, match="0 cores free"):
        c.run(c.service.instances.migrate_vm(c.alice, "mover", "h2"))
    still = c.instance(mover.id)
    assert (still.state, still.host_id) == (S.Running, c.hosts[0])


def test_a_migration_in_flight_holds_its_room_on_the_target(tmp_path: Path) -> None:
    """Until the transfer ends the instance is placed on its source in the store, yet a claim
    on the target must already count it: no activation may take that room meanwhile."""
    c = cluster(tmp_path, MemoryStore(), hosts=2, memory=8192, cores=2)
    mover = activate(c, create(c, "mover", cores=2), "h1")
    late = create(c, "late", cores=1)
    instances = c.service.instances

    async def scenario() -> None:
        c.nodes.migration_gate = gate = asyncio.Event()
        assert (await instances.migrate_vm(c.alice, "mover", "h2")).state is S.MigrateTrans
        with pytest.raises(InsufficientResources, match="0 cores free"):
            await instances.activate_vm(c.agent, str(late.id), "h2")
        gate.set()
        await instances._migrations.wait()
        with pytest.raises(InsufficientResources, match="0 cores free"):
            await instances.activate_vm(c.agent, str(late.id), "h2")  # now placed there
        assert (await instances.activate_vm(c.agent, str(late.id), "h1")).state is S.Running

    c.run(scenario())
    moved = c.instance(mover.id)
    assert (moved.state, moved.host_id) == (S.Running, c.hosts[1])
