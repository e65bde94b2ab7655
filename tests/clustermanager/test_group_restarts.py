"""Issue 14.4: HA restarts are per instance. A group that started is never torn down because a
member is restarted or fails later; a member that was suspended and resumed restarts from its
image; while a group start is in flight, a failing member still tears its group down (ADR 0009).

The scheduler's side runs the real ``Agent`` over the cluster manager's services in process
(``InProcessCm``), so a round here is what ``tashi-scheduler`` does, without HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tashi.api.schemas import HostOut, InstanceOut
from tashi.clustermanager.instances.restart import reschedule
from tashi.domain.hints import GROUP_START, RESUME_SOURCE
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import Host, Instance, Principal, Role
from tashi.domain.nodes import Heartbeat, NodeEvent, VmReport
from tashi.domain.operations import DiskRequest, InstanceQuery, VmRequest
from tashi.domain.states import InstanceState
from tashi.frontends.rest import render
from tashi.scheduler.agent import Agent, RoundResult
from tashi.scheduler.policies import registry
from tashi.scheduler.policies.base import PolicyOptions
from tashi.storage.contract import InstanceChanges, InstanceFilter, Transaction
from tashi.storage.memory import MemoryStore
from tests.clustermanager.fakenodes import Cluster, cluster

S = InstanceState
LEASE, MARGIN, EXPIRE = 10.0, 3.0, 6.0


# --- the cluster, its nodes, and the scheduler in process -------------------------------


def ha_cluster(tmp: Path, hosts: int = 3) -> Cluster:
    c = cluster(
        tmp,
        MemoryStore(),
        hosts=hosts,
        cores=4,
        expire_host_time=EXPIRE,
        host_lease_time=LEASE,
        restart_margin=MARGIN,
    )
    lease = c.clock.now() + timedelta(seconds=LEASE)
    for host in c.hosts:
        c.run(c.service.db.write(lambda tx, h=host: tx.hosts.update(h, lease_expires=lease)))
    c.nodes.resume = _recording_resume(c)  # type: ignore[method-assign]
    return c


def _recording_resume(c: Cluster) -> Any:
    """The fake's restores, told apart from starts: ``("resume", host, instance)``."""
    start = c.nodes.instantiate

    async def resume(host: Host, instance: Instance, source: str) -> int:
        vm_id = await start(host, instance)
        c.nodes.calls[-1] = ("resume", host.id, instance.id)
        return vm_id

    return resume


def group_of_three(c: Cluster, hosts: tuple[str, str, str]) -> list[Instance]:
    request = VmRequest(name="w", disks=[DiskRequest("base.qcow2")])
    c.run(c.service.instances.create_many(c.alice, request, 3))
    pairs = [(f"w-{n}", host) for n, host in enumerate(hosts)]
    return c.run(c.service.groups.activate_group(c.agent, pairs))  # type: ignore[no-any-return]


def lose(c: Cluster, index: int) -> set[str]:
    """Host ``index`` dies: liveness marks it down and its instances Orphaned, and HA, once it
    is sure the host stopped them (``ha.py`` decides when, ADR 0010), moves each back to
    Pending with ``restart.reschedule``. The names moved."""
    host_id = c.hosts[index]
    c.nodes.dead.add(host_id)
    c.clock.advance(EXPIRE + 0.5)
    c.run(c.service.liveness.check())
    c.clock.advance(LEASE + MARGIN)
    now = c.clock.now()

    def restart(tx: Transaction) -> list[Instance]:
        host = tx.hosts.get(host_id)
        orphans = tx.instances.find(InstanceFilter(host_id=host_id, states=[S.Orphaned]))
        return [reschedule(tx, inst, host, now, "lost") for inst in orphans]

    return {i.name for i in c.run(c.service.db.write(restart))}


def node(c: Cluster, host: HostId) -> Principal:
    """The node account of ``host``, made and linked on first use, to report as that node."""
    name = f"node{host}"
    now = c.clock.now()

    def link(tx: Transaction) -> Principal:
        user = next((u for u in tx.users.list() if u.name == name), None)
        if user is None:
            user = tx.users.add(name, role=Role.node, priority=0, password_hash="x", now=now)
            tx.hosts.set_link(host, endpoint="http://node:1", secret="s", user_id=user.id, now=now)
        return Principal(UserId(user.id), name, Role.node)

    return c.run(c.service.db.write(link))  # type: ignore[no-any-return]


def event(c: Cluster, inst: Instance, kind: str, detail: str = "") -> None:
    """``inst``'s node reports ``kind`` about it."""
    host = c.instance(inst.id).host_id
    assert host is not None
    events = [NodeEvent(instance_id=inst.id, kind=kind, detail=detail, at=datetime.now(UTC))]
    c.run(c.service.node_reports.events(node(c, host), host, events))


def snapshot(c: Cluster, group: list[Instance]) -> list[tuple[str, S, HostId | None, int | None]]:
    return [(i.name, i.state, i.host_id, i.vm_id) for i in map(c.instance, [g.id for g in group])]


@dataclass
class InProcessCm:
    """What ``Agent`` asks of ``CmClient``, answered by the services as the REST routes do."""

    c: Cluster
    activated: list[list[str]] = field(default_factory=list)  # the names of each activation

    async def hosts(self) -> list[HostOut]:
        rows = await self.c.service.hosts.list_with_usage(self.c.agent)
        return [
            HostOut.model_validate(render.host(h, self.c.service.hosts.report(h), u))
            for h, u in rows
        ]

    async def instances(self) -> list[InstanceOut]:
        rows = await self.c.service.instances.find(self.c.agent, InstanceQuery())
        return [InstanceOut.model_validate(render.instance(i, {}, {})) for i in rows]

    async def _name(self, ref: int | str) -> str:
        return (await self.c.service.instances.get(self.c.agent, str(ref))).name

    async def priorities(self) -> dict[int, int]:
        return {}

    async def changes(self, after: int, timeout: float) -> int:
        return after + 1

    async def activate(self, ref: int | str, host: int | str) -> InstanceOut:
        self.activated.append([await self._name(ref)])
        inst = await self.c.service.instances.activate_vm(self.c.agent, str(ref), str(host))
        return InstanceOut.model_validate(render.instance(inst, {}, {}))

    async def activate_group(self, placements: list[tuple[int, int]]) -> list[InstanceOut]:
        pairs = [(str(i), str(h)) for i, h in placements]
        self.activated.append([await self._name(i) for i, _ in placements])
        placed = await self.c.service.groups.activate_group(self.c.agent, pairs)
        return [InstanceOut.model_validate(render.instance(i, {}, {})) for i in placed]

    async def hold(self, ref: int | str, reason: str) -> InstanceOut:
        inst = await self.c.service.instances.hold_vm(self.c.agent, str(ref), reason)
        return InstanceOut.model_validate(render.instance(inst, {}, {}))


def schedule(c: Cluster) -> tuple[RoundResult, list[list[str]]]:
    """One round of the real scheduler (the ``primitive`` policy); what it activated, how."""
    cm = InProcessCm(c)
    agent = Agent(cm, registry.create("primitive", PolicyOptions()))  # type: ignore[arg-type]
    return c.run(agent.round()), cm.activated


# --- a group that ran: its members are independent -------------------------------------


def test_a_lost_member_restarts_alone_and_its_failure_leaves_its_running_mates_be(
    tmp_path: Path,
) -> None:
    c = ha_cluster(tmp_path)
    group = group_of_three(c, ("h1", "h2", "h3"))
    mates = snapshot(c, group[1:])
    assert lose(c, 0) == {"w-0"}
    assert c.instance(group[0].id).state is S.Pending
    assert snapshot(c, group[1:]) == mates
    # the scheduler places it alone (activateVm); its start fails: only it is Held
    c.nodes.fail_start = {"w-0"}
    calls = len(c.nodes.calls)
    result, activated = schedule(c)
    assert activated == [["w-0"]] and result.held == 1
    held = c.instance(group[0].id)
    assert held.state is S.Held and "exited during boot" in (held.reason or "")
    assert "torn down" not in (held.reason or "")
    assert snapshot(c, group[1:]) == mates  # untouched: never stopped, never held
    assert not [call for call in c.nodes.calls[calls:] if call[0] == "destroy"]
    # and the next try runs it, alone again
    c.nodes.fail_start = set()
    c.clock.advance(120)
    assert schedule(c)[1] == [["w-0"]]
    assert c.instance(group[0].id).state is S.Running
    assert snapshot(c, group[1:]) == mates


def test_a_group_that_ha_restarted_whole_is_placed_member_by_member(tmp_path: Path) -> None:
    """The report of issue 14: every member went back to Pending at once (their hosts fenced
    themselves), one member cannot start, and the group was torn down again and again. Now each
    member is placed alone and the one that fails is the only one Held."""
    c = ha_cluster(tmp_path)
    group = group_of_three(c, ("h1", "h1", "h1"))
    assert lose(c, 0) == {"w-0", "w-1", "w-2"}
    c.nodes.fail_start = {"w-1"}
    result, activated = schedule(c)
    assert sorted(activated) == [["w-0"], ["w-1"], ["w-2"]]
    assert (result.placed, result.held) == (2, 1)
    now = [c.instance(i.id) for i in group]
    assert [i.state for i in now] == [S.Running, S.Held, S.Running]
    assert "torn down" not in (now[1].reason or "")
    assert not [call for call in c.nodes.calls if call[0] == "destroy"]


def test_a_member_that_fails_later_is_its_own_affair(tmp_path: Path) -> None:
    """A member of a group that started long ago exits (a guest crash): its record goes, as
    for any instance, and its mates run on, even with a member waiting that joined later."""
    c = ha_cluster(tmp_path)
    group = group_of_three(c, ("h1", "h2", "h3"))
    late = VmRequest(name="late", disks=[DiskRequest("base.qcow2")], group_name="w")
    c.run(c.service.instances.create_vm(c.alice, late))
    event(c, group[0], "exited", "guest panicked")
    assert [i.name for i in c.run(c.service.instances.find(c.admin, InstanceQuery()))] == [
        "w-1",
        "w-2",
        "late",
    ]
    assert [c.instance(i.id).state for i in group[1:]] == [S.Running, S.Running]
    assert c.instance("late").state is S.Pending


# --- a member suspended and resumed earlier ---------------------------------------------


def suspend_and_resume(c: Cluster, inst: Instance, confirm: str) -> Instance:
    """Suspend ``inst``, resume it on its host; the restore's end is confirmed by the node's
    ``started`` event or (``heartbeat``) by a report that lists it running."""
    host = c.instance(inst.id).host_id
    assert host is not None
    c.run(c.service.instances.suspend_vm(c.alice, inst.name))
    event(c, inst, "suspended", f"{inst.id}_{inst.name}.gz")
    assert c.instance(inst.id).state is S.Suspended
    resumed = c.run(c.service.instances.resume_vm(c.alice, inst.name))
    assert resumed.hints[RESUME_SOURCE] == f"{inst.id}_{inst.name}.gz"
    name = c.run(c.service.db.read(lambda tx: tx.hosts.get(host))).name
    restoring = c.run(c.service.instances.activate_vm(c.agent, inst.name, name))
    assert restoring.state is S.Resuming and c.nodes.calls[-1] == ("resume", host, inst.id)
    if confirm == "event":
        event(c, inst, "started", "restored from its suspend file")
    else:
        c.clock.advance(c.service.node_reports._rules.grace + 1)
        sent = Instance(
            id=inst.id,
            name=inst.name,
            user_id=inst.user_id,
            state=S.Running,
            cores=1,
            memory=128,
            disks=(),
            nics=(),
        )
        seen = VmReport(instance=sent, vm_id=restoring.vm_id or 1, state="running")
        c.run(c.service.node_reports.heartbeat(node(c, host), host, Heartbeat(vms=(seen,))))
    return c.instance(inst.id)


@pytest.mark.parametrize("confirm", ["event", "heartbeat"])
def test_a_finished_restore_drops_the_resume_mark(tmp_path: Path, confirm: str) -> None:
    c = ha_cluster(tmp_path)
    group = group_of_three(c, ("h1", "h2", "h3"))
    restored = suspend_and_resume(c, group[0], confirm)
    assert restored.state is S.Running
    assert RESUME_SOURCE not in restored.hints


def test_a_member_suspended_and_resumed_earlier_restarts_from_its_image(tmp_path: Path) -> None:
    c = ha_cluster(tmp_path)
    group = group_of_three(c, ("h1", "h2", "h3"))
    suspend_and_resume(c, group[0], "event")
    mates = snapshot(c, group[1:])
    assert lose(c, 0) == {"w-0"}
    result, activated = schedule(c)
    assert activated == [["w-0"]] and result.placed == 1
    again = c.instance(group[0].id)
    assert again.state is S.Running and again.host_id in c.hosts[1:]
    assert c.nodes.calls[-1] == ("start", again.host_id, group[0].id)  # no resumeFrom
    assert snapshot(c, group[1:]) == mates


def test_a_stale_resume_mark_is_not_used_when_ha_restarts(tmp_path: Path) -> None:
    """An instance resumed before this fix kept its mark while it ran (the store of the issue's
    cluster holds such rows): HA drops it, says so in the history, and starts from the image."""
    c = ha_cluster(tmp_path)
    group = group_of_three(c, ("h1", "h2", "h3"))
    first = c.instance(group[0].id)
    stale = {**first.hints, RESUME_SOURCE: f"{first.id}_{first.name}.gz"}
    now = c.clock.now()
    c.run(
        c.service.db.write(
            lambda tx: tx.instances.transition(
                first.id, S.Running, S.Running, now=now, changes=InstanceChanges(hints=stale)
            )
        )
    )
    assert lose(c, 0) == {"w-0"}
    pending = c.instance(first.id)
    assert RESUME_SOURCE not in pending.hints and pending.hints.get(GROUP_START)
    assert "suspend file 1_w-0.gz is not used" in c.history(first.id)[-1][1]
    assert schedule(c)[1] == [["w-0"]]
    assert c.instance(first.id).state is S.Running
    assert c.nodes.calls[-1][0] == "start"


# --- a group whose start is in flight: all or nothing, as before ------------------------


def test_a_member_that_fails_while_its_group_starts_still_tears_it_down(tmp_path: Path) -> None:
    c = ha_cluster(tmp_path)
    request = VmRequest(name="w", disks=[DiskRequest("base.qcow2")])
    group = c.run(c.service.instances.create_many(c.alice, request, 3))
    c.nodes.fail_start = {"w-2"}
    result, activated = schedule(c)
    assert activated == [["w-0", "w-1", "w-2"]] and result.held == 3
    reason = "group w torn down: w-2 failed to start: qemu of w-2 exited during boot"
    held = [c.instance(i.id) for i in group]
    assert [i.state for i in held] == [S.Held] * 3
    # the scheduler's hold names the failure too (the cluster manager's reason is in history)
    assert all("qemu of w-2 exited during boot" in (i.reason or "") for i in held)
    assert not any(c.nodes.running.values())
    assert all(("groupFailed", reason) in c.history(i.id) for i in group)
    # torn down, they wait to be placed together again
    assert all(GROUP_START not in c.instance(i.id).hints for i in group)
    c.nodes.fail_start = set()
    c.clock.advance(120)
    assert schedule(c)[1] == [["w-0", "w-1", "w-2"]]
    assert {c.instance(i.id).state for i in group} == {S.Running}


def test_a_restore_that_fails_while_its_group_starts_tears_it_down(tmp_path: Path) -> None:
    """The node reports the failure (``failed``) of a member still Resuming in the group's
    start: the members placed with it are torn down."""
    c = ha_cluster(tmp_path)
    group = group_of_three(c, ("h1", "h2", "h3"))
    now = c.clock.now()
    c.run(
        c.service.db.write(
            lambda tx: tx.instances.transition(
                InstanceId(group[2].id), S.Running, S.Resuming, now=now
            )
        )
    )
    event(c, group[2], "failed", "restore failed: bad file")  # its node destroyed that VM
    assert [c.instance(i.id).state for i in group] == [S.Held] * 3
    assert c.nodes.on(c.hosts[0]) == {} and c.nodes.on(c.hosts[1]) == {}  # mates stopped
    assert "w-2 failed to start: restore failed: bad file" in (c.instance(group[0].id).reason or "")
