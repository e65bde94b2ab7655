"""A migration whose driver was lost (the cluster manager restarted mid-migration), or whose
source never answered, is settled from what the two hosts say, never by giving the VM up to a
host that no longer has it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tashi.clustermanager.instances.migration import TARGET_HINT
from tashi.clustermanager.service import ClusterService, build_service
from tashi.domain.clock import FakeClock
from tashi.domain.errors import BackendFailure, NotFound, TashiError, Unanswered, Unavailable
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import (
    DiskConfig,
    Host,
    Instance,
    InstanceSpec,
    NicConfig,
    Principal,
    Role,
)
from tashi.domain.nodes import Ticket, Transfer, VmStatus
from tashi.domain.states import DEADLINES, InstanceState
from tashi.storage.contract import InstanceChanges, Transaction
from tashi.storage.memory import MemoryStore
from tests.api.conftest import make_settings

S = InstanceState


@dataclass
class TwoHosts:
    """Node managers as a script: what each host runs, and the calls the cluster made."""

    running: dict[int, dict[InstanceId, str]] = field(default_factory=lambda: {1: {}, 2: {}})
    unreachable: set[int] = field(default_factory=set)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def _ask(self, host: Host) -> dict[InstanceId, str]:
        if host.id in self.unreachable:
            raise Unavailable(f"host {host.name} does not answer")
        return self.running[host.id]

    async def vms(self, host: Host) -> dict[InstanceId, VmStatus]:
        return {
            i: VmStatus(instance_id=i, vm_id=100 * host.id, state=s)
            for i, s in self._ask(host).items()
        }

    async def finish_incoming(self, host: Host, instance: Instance) -> int:
        self.calls.append(("finish_incoming", host.id))
        vms = self._ask(host)
        if vms.get(instance.id) != "incoming":
            raise NotFound(f"this host runs no VM for instance {instance.id}")
        vms[instance.id] = "running"
        return 4242

    async def destroy(self, host: Host, instance: Instance) -> None:
        self.calls.append(("destroy", host.id))
        self._ask(host).pop(instance.id, None)

    #: What the source's ``migrate`` does: (whether QEMU sent the VM, the error it raises).
    migration: tuple[bool, TashiError | None] | None = None

    async def prepare_incoming(self, host: Host, instance: Instance) -> Ticket:
        self._ask(host)[instance.id] = "incoming"
        return Ticket(host=host.name, port=1)

    async def migrate(
        self, source: Host, instance: Instance, ticket: Ticket, timeout: float
    ) -> Transfer:
        if self.migration is None:
            raise AssertionError("nothing drives this migration")
        sent, error = self.migration
        if sent:
            self._ask(source).pop(instance.id)
        if error is not None:
            raise error
        return Transfer(total_seconds=0.5, downtime_ms=3.0, transferred_bytes=None)

    async def close(self) -> None:
        return None


def _setup(
    tmp_path: Path, state: InstanceState, **options: object
) -> tuple[ClusterService, TwoHosts, FakeClock]:
    settings = make_settings(tmp_path, **options)
    clock = FakeClock()
    nodes = TwoHosts()
    service = build_service(settings, MemoryStore(), clock=clock, nodes=lambda db: nodes)  # type: ignore[arg-type,return-value]
    now = clock.now()
    spec = InstanceSpec(
        "vm", 1, 64, (DiskConfig("base.qcow2"),), (NicConfig(NetworkId(1), "52:54:00:00:00:01"),)
    )

    def seed(tx: Transaction) -> None:
        tx.networks.add(NetworkId(1), "default")
        for name in ("h1", "h2"):
            host = tx.hosts.add(name, memory=1024, cores=2, version="x", now=now)
            tx.hosts.update(host.id, up=True, last_heartbeat=now)
        user = tx.users.add("alice", role=Role.user, priority=0, password_hash="x", now=now)
        inst = tx.instances.add(user.id, spec, unique_name=True, now=now)
        path = [S.Activating, S.Running, S.MigratePrep, S.MigrateTrans]
        for before, after in zip([S.Pending, *path], path, strict=False):
            changes = InstanceChanges(
                host_id=HostId(1) if after is S.Activating else None,
                vm_id=7 if after is S.Running else None,
                hints={TARGET_HINT: "2"} if after is S.MigratePrep else None,
            )
            tx.instances.transition(inst.id, before, after, now=now, changes=changes)
            if after is state:
                break

    asyncio.run(service.db.write(seed))
    return service, nodes, clock


def _instance(service: ClusterService) -> Instance:
    return asyncio.run(service.db.read(lambda tx: tx.instances.get(InstanceId(1))))


def _history(service: ClusterService) -> str:
    events = asyncio.run(service.db.read(lambda tx: tx.events.list(InstanceId(1), limit=20)))
    return "\n".join(e.message for e in events)


@pytest.mark.parametrize("state", [S.MigratePrep, S.MigrateTrans])
def test_a_finished_transfer_is_finished_on_the_target(tmp_path: Path, state: S) -> None:
    service, nodes, _ = _setup(tmp_path, state)
    nodes.running[2][InstanceId(1)] = "incoming"  # the source sent it and forgot it
    asyncio.run(service.deadlines.check())
    inst = _instance(service)
    assert (inst.state, inst.host_id, inst.vm_id) == (S.Running, 2, 4242)
    assert TARGET_HINT not in inst.hints
    assert nodes.running == {1: {}, 2: {InstanceId(1): "running"}}
    assert "finished by asking both hosts" in _history(service)


def test_a_vm_the_target_already_runs_is_recorded_there(tmp_path: Path) -> None:
    service, nodes, _ = _setup(tmp_path, S.MigrateTrans)
    nodes.running[2][InstanceId(1)] = "running"  # it was told to run before the CM went down
    asyncio.run(service.deadlines.check())
    inst = _instance(service)
    assert (inst.state, inst.host_id, inst.vm_id) == (S.Running, 2, 200)
    assert nodes.calls == []


def test_a_vm_still_on_the_source_stays_there(tmp_path: Path) -> None:
    service, nodes, _ = _setup(tmp_path, S.MigrateTrans)
    nodes.running[1][InstanceId(1)] = "running"
    nodes.running[2][InstanceId(1)] = "incoming"
    asyncio.run(service.deadlines.check())
    inst = _instance(service)
    assert (inst.state, inst.host_id, inst.vm_id) == (S.Running, 1, 7)
    assert nodes.running == {1: {InstanceId(1): "running"}, 2: {}}  # the half-made copy is gone
    assert ("finish_incoming", 2) not in nodes.calls
    assert "still on h1" in _history(service)


def test_a_transfer_in_progress_is_left_to_finish(tmp_path: Path) -> None:
    service, nodes, _ = _setup(tmp_path, S.MigrateTrans)
    nodes.running[1][InstanceId(1)] = "migrating"
    nodes.running[2][InstanceId(1)] = "incoming"
    asyncio.run(service.deadlines.check())
    assert _instance(service).state is S.MigrateTrans
    assert nodes.calls == []
    del nodes.running[1][InstanceId(1)]  # the source finished sending
    asyncio.run(service.deadlines.check())
    assert (_instance(service).state, _instance(service).host_id) == (S.Running, 2)


def test_a_vm_on_neither_host_is_not_invented(tmp_path: Path) -> None:
    service, nodes, _ = _setup(tmp_path, S.MigrateTrans, host_lease_time=0.0)  # without HA
    asyncio.run(service.deadlines.check())
    inst = _instance(service)
    assert (inst.state, inst.host_id) == (S.Running, 1)  # the source's next report ends it
    assert nodes.calls == []
    assert "on neither host" in _history(service)


def test_with_ha_a_vm_on_neither_host_starts_again(tmp_path: Path) -> None:
    service, nodes, _ = _setup(tmp_path, S.MigrateTrans)
    asyncio.run(service.deadlines.check())
    inst = _instance(service)
    assert (inst.state, inst.host_id, inst.hints.get(TARGET_HINT)) == (S.Pending, None, None)
    assert nodes.calls == []
    assert "h1 and the migration's target both lack it" in _history(service)


def test_an_unreachable_host_is_asked_again_until_the_deadline(tmp_path: Path) -> None:
    service, nodes, clock = _setup(tmp_path, S.MigrateTrans)
    nodes.unreachable.add(1)
    asyncio.run(service.deadlines.check())
    assert _instance(service).state is S.MigrateTrans
    clock.advance(DEADLINES[S.MigrateTrans] + 1)
    asyncio.run(service.deadlines.check())
    assert _instance(service).state is S.Running


def _migrate(service: ClusterService) -> None:
    async def run() -> None:
        admin = Principal(UserId(1), "alice", Role.admin)
        await service.instances.migrate_vm(admin, "vm", "h2")
        await service.instances._migrations.wait()

    asyncio.run(run())


def test_a_source_that_never_answered_is_asked_not_rolled_back(tmp_path: Path) -> None:
    """The source's node manager died after QEMU had sent the VM: the target's copy is the only
    one, and it must be run there, not destroyed."""
    service, nodes, _ = _setup(tmp_path, S.Running)
    nodes.running[1][InstanceId(1)] = "running"
    nodes.migration = (True, Unanswered("host h1 did not answer: connection reset"))
    _migrate(service)
    assert _instance(service).state is S.MigrateTrans  # nobody knows yet: nothing undone
    assert ("destroy", 2) not in nodes.calls
    asyncio.run(service.deadlines.check())  # the next pass asks both hosts
    inst = _instance(service)
    assert (inst.state, inst.host_id, inst.vm_id) == (S.Running, 2, 4242)
    assert nodes.running == {1: {}, 2: {InstanceId(1): "running"}}


def test_a_source_that_never_answered_and_still_runs_the_vm_keeps_it(tmp_path: Path) -> None:
    service, nodes, _ = _setup(tmp_path, S.Running)
    nodes.running[1][InstanceId(1)] = "running"
    nodes.migration = (False, Unanswered("host h1 did not answer in time"))
    _migrate(service)
    nodes.unreachable.add(1)  # its node manager is still restarting: wait for it
    asyncio.run(service.deadlines.check())
    assert _instance(service).state is S.MigrateTrans
    nodes.unreachable.clear()
    asyncio.run(service.deadlines.check())
    inst = _instance(service)
    assert (inst.state, inst.host_id) == (S.Running, 1)
    assert nodes.running == {1: {InstanceId(1): "running"}, 2: {}}


def test_a_failure_the_source_reports_is_rolled_back_at_once(tmp_path: Path) -> None:
    service, nodes, _ = _setup(tmp_path, S.Running)
    nodes.running[1][InstanceId(1)] = "running"
    nodes.migration = (False, BackendFailure("migrating: connection refused by the target"))
    _migrate(service)
    inst = _instance(service)
    assert (inst.state, inst.host_id) == (S.Running, 1)
    assert nodes.running == {1: {InstanceId(1): "running"}, 2: {}}
    assert "still on h1" in _history(service)


def test_a_target_that_did_not_finish_a_sent_vm_is_asked_again(tmp_path: Path) -> None:
    service, nodes, _ = _setup(tmp_path, S.Running)
    nodes.running[1][InstanceId(1)] = "running"
    nodes.migration = (True, None)
    nodes.unreachable.add(2)  # prepared, then its node manager went away
    nodes.running[2][InstanceId(1)] = "incoming"

    async def prepared(host: Host, instance: Instance) -> Ticket:
        return Ticket(host=host.name, port=1)

    nodes.prepare_incoming = prepared  # type: ignore[method-assign]
    _migrate(service)
    assert _instance(service).state is S.MigrateTrans
    assert nodes.running[2] == {InstanceId(1): "incoming"}  # its copy was not destroyed
    nodes.unreachable.clear()
    asyncio.run(service.deadlines.check())
    inst = _instance(service)
    assert (inst.state, inst.host_id) == (S.Running, 2)
