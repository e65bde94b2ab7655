"""The cluster manager's event hub at its real publishing points: every instance state change
a service records and every host going down or up is published once its write committed, in
order; a handler that fails is logged and the write it follows still succeeds."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from tashi.clustermanager.events import HostDown, HostUp, InstanceStateChanged, StartFailed
from tashi.domain.errors import BackendFailure
from tashi.domain.nodes import Heartbeat
from tashi.domain.operations import DiskRequest, VmRequest
from tashi.domain.states import InstanceState
from tashi.storage.contract import Transaction
from tashi.storage.memory import MemoryStore
from tests.clustermanager.fakenodes import Cluster, cluster
from tests.clustermanager.test_group_restarts import node

S = InstanceState


def listen(c: Cluster, *kinds: type) -> list[object]:
    seen: list[object] = []

    async def note(event: object) -> None:
        seen.append(event)

    for kind in kinds:
        c.service.events.subscribe(kind, note)
    return seen


def changes(seen: list[object]) -> list[tuple[str, S | None, S]]:
    return [
        (str(e.instance_id), e.previous, e.current)
        for e in seen
        if isinstance(e, InstanceStateChanged)
    ]


def test_an_instances_life_is_published_change_by_change(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore())
    seen = listen(c, InstanceStateChanged)
    request = VmRequest(name="web", disks=[DiskRequest("base.qcow2")], memory=128)
    inst = c.run(c.service.instances.create_vm(c.alice, request))
    c.run(c.service.instances.activate_vm(c.agent, inst.name, "h1"))
    c.run(c.service.instances.destroy_vm(c.alice, inst.name))
    i = str(inst.id)
    assert changes(seen)[:3] == [
        (i, None, S.Pending),
        (i, S.Pending, S.Activating),
        (i, S.Activating, S.Running),
    ]
    assert changes(seen)[3][1:] == (S.Running, S.Destroying)
    first = seen[0]
    assert isinstance(first, InstanceStateChanged) and first.instance is not None
    assert first.instance.name == "web"


def test_hosts_going_down_and_up_are_published_once(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore())
    seen = listen(c, HostUp, HostDown, InstanceStateChanged)
    request = VmRequest(name="web", disks=[DiskRequest("base.qcow2")], memory=128)
    inst = c.run(c.service.instances.create_vm(c.alice, request))
    c.run(c.service.instances.activate_vm(c.agent, inst.name, "h1"))
    seen.clear()
    host = c.hosts[0]
    reporter = node(c, host)
    c.clock.advance(3600)
    c.nodes.dead.update(c.hosts)  # their node managers do not answer either
    c.run(c.service.liveness.check())
    c.nodes.dead.clear()
    kinds = [type(e).__name__ for e in seen]
    assert kinds.count("HostDown") == 2  # both hosts fell silent
    assert (str(inst.id), S.Running, S.Orphaned) in changes(seen)
    seen.clear()
    c.run(c.service.node_reports.heartbeat(reporter, host, Heartbeat(vms=())))
    c.run(c.service.node_reports.heartbeat(reporter, host, Heartbeat(vms=())))
    ups = [e for e in seen if isinstance(e, HostUp)]
    assert len(ups) == 1 and ups[0].host.id == host and ups[0].host.up


def test_a_failing_handler_does_not_fail_the_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = cluster(tmp_path, MemoryStore())

    async def broken(event: InstanceStateChanged) -> None:
        raise RuntimeError("the ledger is full")

    c.service.events.subscribe(InstanceStateChanged, broken)
    seen = listen(c, InstanceStateChanged)
    request = VmRequest(name="web", disks=[DiskRequest("base.qcow2")], memory=128)
    with caplog.at_level(logging.ERROR, logger="tashi.runtime.hub"):
        inst = c.run(c.service.instances.create_vm(c.alice, request))
    assert c.instance(inst.id).state is S.Pending and len(seen) == 1
    assert "the ledger is full" in caplog.text


def test_a_cancelled_writer_still_publishes_what_it_committed(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore())
    seen = listen(c, HostDown)
    host = c.hosts[0]
    began, go_on = threading.Event(), threading.Event()

    def down(tx: Transaction) -> None:
        began.set()
        go_on.wait(10)
        tx.hosts.update(host, up=False)

    async def scenario() -> None:
        writing = asyncio.create_task(c.service.db.write(down))
        await asyncio.to_thread(began.wait, 10)  # the writer thread runs it
        writing.cancel()
        go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await writing
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)

    c.run(scenario())
    assert [type(e) for e in seen] == [HostDown]


def test_a_failed_start_is_published_with_its_reason(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore())
    seen = listen(c, StartFailed)
    c.nodes.fail_start.add("web")
    request = VmRequest(name="web", disks=[DiskRequest("base.qcow2")], memory=128)
    inst = c.run(c.service.instances.create_vm(c.alice, request))
    with pytest.raises(BackendFailure):
        c.run(c.service.instances.activate_vm(c.agent, inst.name, "h1"))
    assert [(type(e), e.instance.id, e.why) for e in seen if isinstance(e, StartFailed)] == [
        (StartFailed, inst.id, "qemu of web exited during boot")
    ]
