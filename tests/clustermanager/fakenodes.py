"""Node managers as a script, for cluster-manager unit tests: a ``NodeGateway`` that starts
and stops VMs in a dict, fails the starts it is told to, and says which hosts answer.

Also ``cluster``: a service over a given store with users, a network and hosts, and the
principals that act on it.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tashi.clustermanager.service import ClusterService, build_service
from tashi.domain.clock import FakeClock
from tashi.domain.errors import BackendFailure, TashiError, Unavailable
from tashi.domain.firewall import Policy
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import Host, Instance, NicConfig, Principal, Role
from tashi.domain.nodes import Grant, Ticket, Transfer, VmStatus
from tashi.storage.contract import Store, Transaction
from tests.api.conftest import make_settings


@dataclass
class FakeNodes:
    """What each host runs (instance id -> vm id), and what the cluster manager asked."""

    running: dict[HostId, dict[InstanceId, int]] = field(default_factory=dict)
    fail_start: set[str] = field(default_factory=set)  # instance names whose start fails
    dead: set[HostId] = field(default_factory=set)  # hosts whose node manager does not answer
    calls: list[tuple[str, HostId, InstanceId]] = field(default_factory=list)
    start_delay: float = 0.0  # seconds each start takes (lets concurrent claims overlap)
    start_gate: asyncio.Event | None = None  # when set, each start waits for this event
    #: per instance name: its start waits for this event (the others go on)
    start_gates: dict[str, asyncio.Event] = field(default_factory=dict)
    #: when set, a destroy waits for this event once the start it waited for (if any) ended
    destroy_gate: asyncio.Event | None = None
    #: When set, migrations are accepted and each transfer waits for this event.
    migration_gate: asyncio.Event | None = None
    #: What each witness says of each host it witnesses: (witness, subject) -> seconds since
    #: its last grant (absent: it never granted; ``uptime`` then decides).
    grant_age: dict[tuple[HostId, HostId], float] = field(default_factory=dict)
    uptime: float = 3600.0
    #: The security-group policy each host was last sent, and every send in order.
    firewalls: dict[HostId, Policy] = field(default_factory=dict)
    firewall_sends: list[HostId] = field(default_factory=list)
    #: The NICs each VM has (instance id -> MACs), and what the next NIC call raises, once.
    nics: dict[InstanceId, list[str]] = field(default_factory=dict)
    refuse_nic: dict[str, TashiError] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    #: starts under way, as a node manager has them: a destroy waits for the instance's
    _launching: dict[InstanceId, asyncio.Event] = field(default_factory=dict)

    def on(self, host: HostId) -> dict[InstanceId, int]:
        return self.running.setdefault(host, {})

    def _reach(self, host: Host) -> dict[InstanceId, int]:
        if host.id in self.dead:
            raise Unavailable(f"host {host.name} does not answer")
        return self.on(host.id)

    async def alive(self, host: Host) -> bool:
        return host.id not in self.dead

    async def instantiate(self, host: Host, instance: Instance) -> int:
        self.calls.append(("start", host.id, instance.id))
        vms = self._reach(host)
        launched = self._launching[instance.id] = asyncio.Event()
        try:
            if self.start_delay:
                await asyncio.sleep(self.start_delay)
            if self.start_gate is not None:
                await self.start_gate.wait()
            if instance.name in self.start_gates:
                await self.start_gates[instance.name].wait()
            if instance.name in self.fail_start:
                raise BackendFailure(f"qemu of {instance.name} exited during boot")
            vm_id = next(self._ids)
            vms[instance.id] = vm_id
            return vm_id
        finally:
            del self._launching[instance.id]
            launched.set()

    async def resume(self, host: Host, instance: Instance, source: str) -> int:
        return await self.instantiate(host, instance)

    async def destroy(self, host: Host, instance: Instance) -> None:
        """As a node manager: a start of the instance under way is waited for, then what it
        started is killed."""
        self.calls.append(("destroy", host.id, instance.id))
        self._reach(host)
        launching = self._launching.get(instance.id)
        if launching is not None:
            await launching.wait()
        if self.destroy_gate is not None:
            await self.destroy_gate.wait()
        self._reach(host).pop(instance.id, None)

    async def shutdown(self, host: Host, instance: Instance) -> None:
        self.calls.append(("shutdown", host.id, instance.id))
        self._reach(host)

    async def pause(self, host: Host, instance: Instance) -> None:
        self._reach(host)

    async def unpause(self, host: Host, instance: Instance) -> None:
        self._reach(host)

    async def suspend(self, host: Host, instance: Instance, target: str) -> None:
        self._reach(host)

    async def prepare_incoming(self, host: Host, instance: Instance) -> Ticket:
        if self.migration_gate is None:
            raise Unavailable("the fake nodes do not migrate")
        self._reach(host)
        return Ticket(host=host.name, port=1)

    async def migrate(
        self, source: Host, instance: Instance, ticket: Ticket, timeout: float
    ) -> Transfer:
        if self.migration_gate is None:
            raise Unavailable("the fake nodes do not migrate")
        await self.migration_gate.wait()
        self._reach(source).pop(instance.id, None)
        return Transfer(total_seconds=0.1, downtime_ms=1.0, transferred_bytes=None)

    async def finish_incoming(self, host: Host, instance: Instance) -> int:
        if self.migration_gate is None:
            raise Unavailable("the fake nodes do not migrate")
        vm_id = next(self._ids)
        self._reach(host)[instance.id] = vm_id
        return vm_id

    async def grant(self, host: Host, subject: HostId) -> Grant:
        self._reach(host)
        age = self.grant_age.get((host.id, subject))
        return Grant(host_id=subject, last_grant_age=age, uptime=self.uptime)

    async def vms(self, host: Host) -> dict[InstanceId, VmStatus]:
        return {
            iid: VmStatus(instance_id=iid, vm_id=vm, state="running")
            for iid, vm in self._reach(host).items()
        }

    async def vmm_call(self, host: Host, instance: Instance, op: str, arg: str) -> str:
        return ""

    async def set_cpu_share(self, host: Host, instance: Instance, share: int) -> None:
        self._reach(host)

    async def attach_nic(self, host: Host, instance: Instance, nic: NicConfig) -> None:
        self.calls.append(("attach_nic", host.id, instance.id))
        self._reach(host)
        refused = self.refuse_nic.pop("attach", None)
        if refused is not None:
            raise refused
        macs = self.nics.setdefault(instance.id, [n.mac for n in instance.nics[:-1]])
        if nic.mac not in macs:
            macs.append(nic.mac)

    async def detach_nic(self, host: Host, instance: Instance, mac: str, timeout: float) -> None:
        self.calls.append(("detach_nic", host.id, instance.id))
        self._reach(host)
        refused = self.refuse_nic.pop("detach", None)
        if refused is not None:
            raise refused
        macs = self.nics.setdefault(instance.id, [n.mac for n in instance.nics])
        if mac in macs:
            macs.remove(mac)

    async def set_firewall(self, host: Host, policy: Policy) -> str:
        self.firewall_sends.append(host.id)
        self._reach(host)
        self.firewalls[host.id] = policy
        return policy.version

    async def sweep(self) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class Cluster:
    service: ClusterService
    nodes: FakeNodes
    clock: FakeClock
    hosts: list[HostId]
    alice: Principal
    agent: Principal
    admin: Principal

    def run(self, work: Any) -> Any:
        return asyncio.run(work)

    def instance(self, ref: int | str) -> Instance:
        return self.run(self.service.instances.get(self.admin, str(ref)))

    def history(self, iid: InstanceId) -> list[tuple[str, str]]:
        events = self.run(self.service.db.read(lambda tx: tx.events.list(iid, limit=100)))
        return [(e.kind, e.message) for e in events]


def cluster(
    tmp: Path,
    store: Store,
    *,
    hosts: int = 2,
    memory: int = 1024,
    cores: int = 2,
    **service: Any,
) -> Cluster:
    """A cluster manager over ``store`` with ``hosts`` up, Normal hosts h1…hN of ``memory`` MB
    and ``cores`` cores, users alice (user), sched (agent) and root (admin), network 1."""
    settings = make_settings(tmp, **service)
    clock = FakeClock()
    nodes = FakeNodes()
    svc = build_service(settings, store, clock=clock, nodes=lambda db: nodes)  # type: ignore[arg-type,return-value]
    now = clock.now()

    def seed(tx: Transaction) -> tuple[list[HostId], list[Principal]]:
        tx.networks.add(NetworkId(1), "default")
        made = []
        for n in range(1, hosts + 1):
            host = tx.hosts.add(f"h{n}", memory=memory, cores=cores, version="x", now=now)
            tx.hosts.update(host.id, up=True, last_heartbeat=now)
            made.append(host.id)
        people = []
        for name, role in (("alice", Role.user), ("sched", Role.agent), ("root", Role.admin)):
            user = tx.users.add(name, role=role, priority=0, password_hash="x", now=now)
            people.append(Principal(UserId(user.id), name, role))
        return made, people

    made, (alice, agent, admin) = asyncio.run(svc.db.write(seed))
    return Cluster(svc, nodes, clock, made, alice, agent, admin)
