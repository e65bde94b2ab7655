"""The scheduling loop: learn of work, read the cluster, place, run the hooks, activate.

One round reads the hosts (with their usage), the instances and the users' priorities, builds
a ``Snapshot``, and places the queue the policy orders: for each instance the policy's planner
ranks hosts, the hooks run (``before_activation``), and the cluster manager is asked to
activate. Decisions are made one after the other in memory (the planner updates its free
capacity after each), while the activations — which wait for a node manager — run
concurrently, at most ``concurrency`` at a time.

The cluster manager has the last word: its claim may refuse a host (409
``insufficient_resources``, when another scheduler got there first), and then the planner gives
the capacity back and offers its next host. An instance no host can take is held
(``holdVm``) with the planner's reason, and retried after ``scheduleDelay``, doubling up to
``maxHoldDelay`` — at once when the cluster's free capacity grew.

Each round also runs the hooks' ``nics_changed`` for a running or paused instance whose NICs
were added or removed since the last round (the DhcpDns hook gives a hot-plugged NIC its
address and lease).

Between rounds the agent long-polls the change feed (``GET /v1/instances:changes``): it wakes
as soon as something changed, and otherwise when a held instance is due or ``watchTimeout``
has passed. It never lists the cluster in a tight loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tashi.api.schemas import HostOut, InstanceOut
from tashi.domain.errors import (
    InsufficientResources,
    InvalidState,
    NotFound,
    TashiError,
)
from tashi.domain.hints import start_of
from tashi.scheduler import snapshot as snap
from tashi.scheduler.cmclient import CmClient
from tashi.scheduler.hooks import InstanceHook
from tashi.scheduler.policies.base import Planner, Policy
from tashi.scheduler.snapshot import Request, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentOptions:
    schedule_delay: float = 2.0  # first retry of a held instance; doubles per failure
    max_hold_delay: float = 60.0
    watch_timeout: float = 25.0
    concurrency: int = 8  # activations in flight
    max_tries: int = 4  # hosts tried for one instance in one round


@dataclass(slots=True)
class RoundResult:
    placed: int = 0
    held: int = 0
    refused: int = 0  # claims the cluster manager refused
    dropped: int = 0  # instances someone else changed meanwhile
    migrations: int = 0
    waiting: int = 0  # held instances not yet due


@dataclass(slots=True)
class _Retry:
    failures: int
    due: float


@dataclass(slots=True)
class _Round:
    snapshot: Snapshot
    planner: Planner
    instances: dict[int, InstanceOut]
    hosts: dict[int, HostOut]
    result: RoundResult = field(default_factory=RoundResult)


class Agent:
    def __init__(
        self,
        client: CmClient,
        policy: Policy,
        hooks: Sequence[InstanceHook] = (),
        options: AgentOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.policy = policy
        self.hooks = list(hooks)
        self.options = options or AgentOptions()
        self._clock = clock
        self._known: dict[int, InstanceOut] = {}
        #: each live instance's NICs (network, MAC) as the hooks last had them
        self._nics: dict[int, _Nics] = {}
        self._retry: dict[int, _Retry] = {}
        self._capacity: tuple[int, float, int] | None = None
        self._version = 0
        self._started = False

    # --- the loop -----------------------------------------------------------------------

    async def start(self) -> None:
        """Hooks' ``start`` with every instance the cluster knows (once)."""
        if self._started:
            return
        instances = await self.client.instances()
        for hook in self.hooks:
            await hook.start(instances)
        self._known = {i.id: i for i in instances}
        self._nics = {i.id: _nics_of(i) for i in instances}
        self._started = True

    async def run_forever(self) -> None:
        await self.start()
        while True:
            await self.round()
            await self.wait()

    async def wait(self) -> None:
        """Until the cluster changed, a held instance is due, or ``watchTimeout``."""
        timeout = self.options.watch_timeout
        if self._retry:
            soonest = min(r.due for r in self._retry.values()) - self._clock()
            timeout = max(0.0, min(timeout, soonest))
        self._version = await self.client.changes(self._version, timeout)

    async def round(self) -> RoundResult:
        await self.start()
        self._version = await self.client.changes(self._version, 0)
        hosts, instances, priorities = await asyncio.gather(
            self.client.hosts(), self.client.instances(), self.client.priorities()
        )
        snapshot = snap.build(hosts, instances, priorities)
        by_id = {i.id: i for i in instances}
        await self._destroyed(by_id)
        await self._nics_changed(instances)
        work = _Round(
            snapshot=snapshot,
            planner=self.policy.plan(snapshot),
            instances=by_id,
            hosts={h.id: h for h in hosts},
        )
        self._forget_backoffs_if_capacity_grew(snapshot)
        now = self._clock()
        due = []
        for request in snapshot.pending:
            retry = self._retry.get(request.id)
            if request.state == snap.HELD and retry is not None and retry.due > now:
                work.result.waiting += 1
            else:
                due.append(request)
        live = {r.id for r in snapshot.pending}
        self._retry = {k: v for k, v in self._retry.items() if k in live}
        await self._place(work, self.policy.order(due))
        result = work.result
        if result.placed or result.held or result.refused or result.dropped:
            log.info(
                "round: placed %d, held %d, refused %d, dropped %d (%d pending, %d hosts)",
                result.placed,
                result.held,
                result.refused,
                result.dropped,
                len(snapshot.pending),
                len(snapshot.hosts),
            )
        if not due:
            for move in self.policy.migrations(snapshot):
                try:
                    await self.client.migrate(move.instance_id, move.target_host_id)
                    log.info("migrating %s: %s", move.instance_name, move.why)
                    work.result.migrations += 1
                except TashiError as exc:
                    log.warning("migration of %s refused: %s", move.instance_name, exc.message)
        return work.result

    # --- placing ------------------------------------------------------------------------

    async def _place(self, work: _Round, queue: list[Request]) -> None:
        slots = asyncio.Semaphore(self.options.concurrency)
        groups = _groups(queue)
        async with asyncio.TaskGroup() as group:
            for request in queue:
                members = groups.get((request.user_id, request.group or ""), [])
                if len(members) > 1:
                    if request is members[0]:
                        await slots.acquire()
                        group.create_task(self._place_group(work, members, slots))
                    continue
                decision = work.planner.candidates(request)
                if not decision.hosts:
                    await self._hold(work, request, decision.reason or "no host fits")
                    continue
                host = decision.hosts[0]
                work.planner.placed(request, host)
                await slots.acquire()
                group.create_task(self._activate(work, request, host, slots))

    async def _activate(
        self, work: _Round, request: Request, host_id: int, slots: asyncio.Semaphore
    ) -> None:
        tried: set[int] = set()
        try:
            while True:
                tried.add(host_id)
                try:
                    await self._start_on(work, request, host_id)
                    work.result.placed += 1
                    self._retry.pop(request.id, None)
                    return
                except InsufficientResources as exc:
                    work.planner.released(request, host_id)
                    work.result.refused += 1
                    log.info("claim of %s on host %d refused: %s", request.name, host_id, exc)
                except (InvalidState, NotFound) as exc:
                    # Placed by another scheduler, destroyed, or its host changed meanwhile:
                    # the next round reads the truth.
                    work.planner.released(request, host_id)
                    work.result.dropped += 1
                    log.info("%s not activated on host %d: %s", request.name, host_id, exc)
                    return
                except TashiError as exc:
                    work.planner.released(request, host_id)
                    await self._hold(work, request, f"activation failed: {exc.message}")
                    return
                if len(tried) >= self.options.max_tries:
                    return  # the next round, on fresher figures
                decision = work.planner.candidates(request, frozenset(tried))
                if not decision.hosts:
                    await self._hold(work, request, decision.reason or "no host fits")
                    return
                host_id = decision.hosts[0]
                work.planner.placed(request, host_id)
        finally:
            slots.release()

    async def _place_group(
        self, work: _Round, members: list[Request], slots: asyncio.Semaphore
    ) -> None:
        """All members or none: hosts for every member from the planner, then one
        ``activateGroup``; a member without a host holds the whole group."""
        try:
            chosen: list[tuple[Request, int]] = []
            for member in members:
                decision = work.planner.candidates(member)
                if not decision.hosts:
                    for placed, host_id in chosen:
                        work.planner.released(placed, host_id)
                    why = f"group {member.group} does not fit: {member.name}: {decision.reason}"
                    for each in members:
                        await self._hold(work, each, why)
                    return
                work.planner.placed(member, decision.hosts[0])
                chosen.append((member, decision.hosts[0]))
            try:
                await self._start_group(work, chosen)
                work.result.placed += len(chosen)
                for member in members:
                    self._retry.pop(member.id, None)
                return
            except TashiError as exc:
                for placed, host_id in chosen:
                    work.planner.released(placed, host_id)
                if isinstance(exc, InsufficientResources | InvalidState | NotFound):
                    work.result.refused += 1
                    log.info("group %s not placed: %s", members[0].group, exc.message)
                    return
                for member in members:
                    await self._hold(work, member, f"activation failed: {exc.message}")
        finally:
            slots.release()

    async def _start_group(self, work: _Round, chosen: list[tuple[Request, int]]) -> None:
        for request, host_id in chosen:
            instance = work.instances[request.id]
            for hook in self.hooks:
                await hook.before_activation(instance, work.hosts[host_id])
        try:
            await self.client.activate_group([(r.id, h) for r, h in chosen])
        except NotFound as exc:
            if exc.message != "Not Found":  # a member is gone, not the route
                raise
            # A cluster manager without activateGroup: its activateVm places members singly.
            for request, host_id in chosen:
                await self.client.activate(request.id, host_id)

    async def _start_on(self, work: _Round, request: Request, host_id: int) -> None:
        instance = work.instances[request.id]
        host = work.hosts[host_id]
        for hook in self.hooks:
            instance = await hook.before_activation(instance, host)
        await self.client.activate(request.id, host_id)

    async def _hold(self, work: _Round, request: Request, reason: str) -> None:
        retry = self._retry.get(request.id)
        failures = retry.failures + 1 if retry is not None else 1
        delay = min(self.options.schedule_delay * 2 ** (failures - 1), self.options.max_hold_delay)
        self._retry[request.id] = _Retry(failures, self._clock() + delay)
        work.result.held += 1
        if request.state == snap.HELD and request.reason == reason:
            return
        try:
            await self.client.hold(request.id, reason)
            log.info("held %s: %s", request.name, reason)
        except TashiError as exc:
            log.warning("could not hold %s (%s): %s", request.name, reason, exc.message)

    def _forget_backoffs_if_capacity_grew(self, snapshot: Snapshot) -> None:
        usable = [h for h in snapshot.hosts if h.usable]
        capacity = (
            sum(h.memory - h.used_memory for h in usable),
            float(sum(h.cores - h.used_cores for h in usable)),
            len(usable),
        )
        previous, self._capacity = self._capacity, capacity
        if previous is not None and any(n > p for n, p in zip(capacity, previous, strict=True)):
            self._retry = {k: _Retry(v.failures, 0.0) for k, v in self._retry.items()}

    # --- hooks after destroy ------------------------------------------------------------

    async def _destroyed(self, now: dict[int, InstanceOut]) -> None:
        gone = [old for iid, old in self._known.items() if iid not in now]
        gone += [i for i in now.values() if i.state == "Exited" and i.id in self._known]
        self._known = {iid: i for iid, i in now.items() if i.state != "Exited"}
        for old in gone:
            for hook in self.hooks:
                try:
                    await hook.after_destroy(old)
                except TashiError as exc:
                    log.warning("hook %s after %s was destroyed: %s", hook.name, old.name, exc)

    # --- hooks after a NIC was added or removed -----------------------------------------

    async def _nics_changed(self, now: Sequence[InstanceOut]) -> None:
        """``nics_changed`` for each running or paused instance whose NICs differ from those
        the hooks last had (an instance activated with them went through
        ``before_activation``); one a hook failed for is tried again next round."""
        seen: dict[int, _Nics] = {}
        for inst in now:
            if inst.state == "Exited":
                continue
            nics = seen[inst.id] = _nics_of(inst)
            before = self._nics.get(inst.id)
            if before is None or before == nics or inst.state not in _PLACED:
                continue
            for hook in self.hooks:
                try:
                    await hook.nics_changed(inst)
                except TashiError as exc:
                    log.warning(
                        "hook %s after the NICs of %s changed: %s", hook.name, inst.name, exc
                    )
                    seen[inst.id] = before  # differs again next round: retried
        self._nics = seen

    async def close(self) -> None:
        for hook in self.hooks:
            try:
                await hook.close()
            except TashiError as exc:
                log.warning("hook %s did not close cleanly: %s", hook.name, exc)


_Nics = tuple[tuple[int, str], ...]
_PLACED = frozenset({"Running", "Paused"})  # a VM runs with the instance's NICs


def _nics_of(instance: InstanceOut) -> _Nics:
    """The instance's NICs as their networks and MACs (not their addresses, which the hooks
    give)."""
    return tuple((nic.network, nic.mac) for nic in instance.nics)


def _groups(queue: Sequence[Request]) -> dict[tuple[int, str], list[Request]]:
    """Queued members of each (owner, groupName) never placed before, in queue order. A member
    that bears a start token ran before (HA restarted it, it was resumed, its own start
    failed): it is placed alone, like any instance (ADR 0009, ``domain/hints.py``)."""
    out: dict[tuple[int, str], list[Request]] = {}
    for request in queue:
        if request.group and start_of(request.hints) is None:
            out.setdefault((request.user_id, request.group), []).append(request)
    return out
