"""``python -m bench scheduling``: placement throughput and decision latency of the scheduler.

One process, no HTTP: the cluster manager's services run in-process over SQLite (the embedded
default store, WAL, in a temporary directory; the claims and state transitions are the real
ones), with node managers that start a VM instantly. (Not the memory store: its ``find`` scans
every instance, which would make each claim's usage query O(instances) and measure the fake.)
For each size (1,000 and 5,000 hosts of 16 cores / 64 GB, 10,000
Pending instances of 1 core / 256 MB) and each policy (primitive, consolidated):

* the snapshot is built as the agent builds it (hosts with usage, then every instance);
* **baseline**: the bare policy decisions for the whole queue (``candidates`` + ``placed``),
  no claim — the ceiling the scheduler cannot beat;
* **placements**: decisions one after the other, each followed by its ``activateVm`` claim
  through the cluster manager's service, ``CONCURRENCY`` claims in flight as the agent does,
  until the queue is placed; placements/s over the whole queue, and the p50/p99
  latency of the decisions alone.

The floor (issue 4): >= 200 placements/s with 1,000 hosts; the goal: >= 500/s with 5,000.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from bench.report import table
from tashi.clustermanager.service import ClusterService, build_service
from tashi.config.clustermanager import (
    ClusterManagerServiceSettings,
    ClusterManagerSettings,
    VfsSettings,
)
from tashi.config.settings import Settings
from tashi.domain.clock import SystemClock
from tashi.domain.errors import Unavailable
from tashi.domain.ids import NetworkId, UserId
from tashi.domain.models import Host, Instance, Principal, Role
from tashi.domain.operations import DiskRequest, InstanceQuery, VmRequest
from tashi.domain.states import InstanceState
from tashi.scheduler.policies import registry
from tashi.scheduler.policies.base import PolicyOptions
from tashi.scheduler.snapshot import HostView, Request, Snapshot
from tashi.storage.contract import Transaction
from tashi.storage.sql.store import open_store

# Claims in flight. 1: on SQLite (one writer) 8 in flight measured slower here (166/s against
# 229/s at 1,000 hosts, --quick), so the figures are for claims one after the other.
CONCURRENCY = 1
FLOOR = (1000, 200.0)  # hosts, placements/s
GOAL = (5000, 500.0)


@dataclass(frozen=True, slots=True)
class Plan:
    sizes: tuple[int, ...] = (1000, 5000)
    instances: int = 10_000
    policies: tuple[str, ...] = ("primitive", "consolidated")


FULL = Plan()
QUICK = Plan(sizes=(1000,), instances=2000)


@dataclass(frozen=True, slots=True)
class Result:
    hosts: int
    policy: str
    placed: int
    snapshot_s: float
    baseline_per_s: float
    baseline_p99_ms: float
    per_s: float
    p50_ms: float
    p99_ms: float

    def verdict(self) -> str:
        for hosts, rate in (FLOOR, GOAL):
            if self.hosts == hosts:
                kind = "floor" if (hosts, rate) == FLOOR else "goal"
                ok = "ok" if self.per_s >= rate else "FAIL"
                return f"{ok} ({kind} {rate:.0f}/s)"
        return ""


class InstantNodes:
    """Node managers that start a VM at once (the claim is what is measured)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def alive(self, host: Host) -> bool:
        return True

    async def instantiate(self, host: Host, instance: Instance) -> int:
        return next(self._ids)

    async def close(self) -> None:
        return None

    def __getattr__(self, name: str) -> object:
        async def refuse(*args: object, **kwargs: object) -> None:
            raise Unavailable(f"the benchmark's nodes do not {name}")

        return refuse


def _settings(tmp: Path) -> Settings:
    vfs = tmp / "vfs"
    (vfs / "images").mkdir(parents=True)
    (vfs / "images" / "disk.img").write_bytes(b"\0" * 4096)
    (tmp / "state").mkdir(mode=0o700)
    return Settings(
        cluster_manager=ClusterManagerSettings(state_dir=tmp / "state"),
        cluster_manager_service=replace(ClusterManagerServiceSettings(), max_batch=5000),
        vfs=VfsSettings(prefix=vfs),
    )


async def _cluster(tmp: Path, hosts: int, instances: int) -> tuple[ClusterService, Principal]:
    settings = _settings(tmp)
    store = open_store(settings.sql, settings.cluster_manager.state_dir)
    service = build_service(settings, store, nodes=lambda db: InstantNodes())  # type: ignore[arg-type,return-value]
    now = SystemClock().now()

    def seed(tx: Transaction) -> tuple[Principal, Principal]:
        tx.networks.add(NetworkId(1), "default")
        for n in range(1, hosts + 1):
            host = tx.hosts.add(f"h{n}", memory=65536, cores=16, version="x", now=now)
            tx.hosts.update(host.id, up=True, last_heartbeat=now)
        made = []
        for name, role in (("alice", Role.user), ("sched", Role.agent)):
            user = tx.users.add(name, role=role, priority=0, password_hash="x", now=now)
            made.append(Principal(UserId(user.id), name, role))
        return made[0], made[1]

    alice, agent = await service.db.write(seed)
    # createVm one by one: createMany would make one group, placed only all together.
    disks = [DiskRequest(uri="disk.img")]
    for k in range(instances):
        request = VmRequest(name=f"vm{k}", disks=disks, cores=1, memory=256)
        await service.instances.create_vm(alice, request)
    return service, agent


async def _snapshot(service: ClusterService, agent: Principal) -> Snapshot:
    """What the agent's ``snapshot.build`` makes of getHosts + getInstances."""
    hosts = await service.hosts.list_with_usage(agent)
    instances = await service.instances.find(agent, InstanceQuery())
    pending = tuple(
        Request(id=i.id, name=i.name, user_id=i.user_id, memory=i.memory, cores=i.cores)
        for i in instances
        if i.state in (InstanceState.Pending, InstanceState.Held)
    )
    return Snapshot(
        hosts=tuple(
            HostView(
                id=h.id,
                name=h.name,
                up=h.up,
                state=h.state.name,
                memory=h.memory,
                cores=h.cores,
                config=MappingProxyType(dict(h.config)),
                used_memory=u.memory,
                used_cores=u.cores,
                instances=u.instances,
            )
            for h, u in hosts
        ),
        pending=pending,
    )


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(hosts: int, instances: int, policy_name: str) -> Result:
    with tempfile.TemporaryDirectory(prefix="tashi-bench-sched-") as tmp:
        service, agent = await _cluster(Path(tmp), hosts, instances)
        try:
            started = time.perf_counter()
            snapshot = await _snapshot(service, agent)
            snapshot_s = time.perf_counter() - started
            policy = registry.create(policy_name, PolicyOptions())
            queue = policy.order(snapshot.pending)

            planner = policy.plan(snapshot)
            bare: list[float] = []
            started = time.perf_counter()
            for request in queue:
                t = time.perf_counter()
                decision = planner.candidates(request)
                planner.placed(request, decision.hosts[0])
                bare.append(time.perf_counter() - t)
            baseline = len(queue) / (time.perf_counter() - started)

            planner = policy.plan(snapshot)
            decisions: list[float] = []
            placed = 0
            slots = asyncio.Semaphore(CONCURRENCY)

            async def claim(request_id: int, host: int) -> None:
                nonlocal placed
                try:
                    await service.instances.activate_vm(agent, str(request_id), str(host))
                    placed += 1
                finally:
                    slots.release()

            started = time.perf_counter()
            async with asyncio.TaskGroup() as group:
                for request in queue:
                    t = time.perf_counter()
                    decision = planner.candidates(request)
                    decisions.append(time.perf_counter() - t)
                    host = decision.hosts[0]
                    planner.placed(request, host)
                    await slots.acquire()
                    group.create_task(claim(request.id, host))
            rate = placed / (time.perf_counter() - started)
        finally:
            await service.aclose()
            service.close()
    return Result(
        hosts=hosts,
        policy=policy_name,
        placed=placed,
        snapshot_s=snapshot_s,
        baseline_per_s=baseline,
        baseline_p99_ms=_p(bare, 0.99),
        per_s=rate,
        p50_ms=_p(decisions, 0.50),
        p99_ms=_p(decisions, 0.99),
    )


HEADER = [
    "hosts",
    "policy",
    "placed",
    "placements/s",
    "decision p50 ms",
    "decision p99 ms",
    "baseline decisions/s",
    "baseline p99 ms",
    "ratio",
    "snapshot s",
    "verdict",
]


def rows(results: list[Result]) -> list[list[str]]:
    return [
        [
            str(r.hosts),
            r.policy,
            str(r.placed),
            f"{r.per_s:.0f}",
            f"{r.p50_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"{r.baseline_per_s:.0f}",
            f"{r.baseline_p99_ms:.3f}",
            f"{r.per_s / r.baseline_per_s:.2f}",
            f"{r.snapshot_s:.2f}",
            r.verdict(),
        ]
        for r in results
    ]


def run(plan: Plan, say: object = print) -> list[Result]:
    results = []
    for hosts in plan.sizes:
        for name in plan.policies:
            results.append(asyncio.run(measure(hosts, plan.instances, name)))
    print(table(rows(results), HEADER))
    print(
        "\nin one process over SQLite; placements = decision + activateVm claim"
        f" ({CONCURRENCY} claim(s) in flight); baseline = the bare policy decisions (no"
        " claim); ratio = placements/s over baseline decisions/s"
    )
    return results


def missed(results: list[Result]) -> bool:
    return any(r.verdict().startswith("FAIL") for r in results)


if __name__ == "__main__":
    import sys

    sys.exit(1 if missed(run(QUICK if "--quick" in sys.argv else FULL)) else 0)
