"""NodeService over the fake VMM and network drivers: what it reports, and the shutdown grace."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tashi.domain.errors import AlreadyExists, BackendFailure
from tashi.domain.ids import InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.nodes import NodeEvent
from tashi.domain.states import InstanceState
from tashi.domain.volumes import device_index
from tashi.network.fake import FakeHostState, FakeNetworkDriver
from tashi.nodemanager.collaborators import EventSink
from tashi.nodemanager.service import NodeService
from tashi.nodemanager.vmdirs import VmDirs
from tashi.vmm.base import BootSpec, DiskSpec, VmState
from tashi.vmm.fake import FakeDriver


@dataclass
class _Prepared:
    disks: Sequence[DiskSpec]
    boot: BootSpec = field(default_factory=BootSpec)
    released: bool = False

    def release(self) -> None:
        self.released = True

    def settle(self) -> list[str]:
        return []

    def plug(self, disk: DiskConfig) -> DiskSpec:
        volume = None if disk.device is None else device_index(disk.device)
        spec = DiskSpec(path=Path("/nonexistent") / disk.uri, shared=True, volume=volume)
        self.disks = [*self.disks, spec]
        return spec

    def unplug(self, path: Path) -> None:
        self.disks = [d for d in self.disks if d.path != path]


@dataclass
class _Disks:
    prepared: list[_Prepared] = field(default_factory=list)

    def prepare(
        self, instance_id: InstanceId, disks: Sequence[DiskConfig], *, incoming: bool = False
    ) -> _Prepared:
        self.prepared.append(
            _Prepared([DiskSpec(path=Path("/nonexistent") / d.uri) for d in disks])
        )
        return self.prepared[-1]

    def blank_like(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")

    def adopt(self, instance_id: InstanceId, disks: Sequence[DiskConfig]) -> _Prepared:
        return self.prepare(instance_id, disks)

    def discard(self, instance_id: InstanceId) -> None:
        """Nothing on disk."""


@dataclass
class _Events:
    got: list[NodeEvent] = field(default_factory=list)

    def put(self, event: NodeEvent) -> None:
        self.got.append(event)


def wire(iid: int) -> Instance:
    """The instance as the cluster manager sends it."""
    return Instance(
        id=InstanceId(iid),
        name=f"vm{iid}",
        user_id=UserId(1),
        state=InstanceState.Running,
        cores=1,
        memory=64,
        disks=(DiskConfig(uri="a.img"),),
        nics=(NicConfig(network=NetworkId(1), mac="52:54:00:00:00:01"),),
    )


async def pump(driver: FakeDriver, node: NodeService) -> None:
    async for event in driver.events():
        if event.state is VmState.exited:
            await node.on_exit(event.instance_id, "")


def make(
    tmp_path: Path, *, poweroff_delay: float, grace: float, sink: EventSink | None = None
) -> tuple[NodeService, _Events, _Disks, FakeDriver]:
    """A node service over the fake drivers; its events go to ``sink`` if given, else to the
    ``_Events`` returned."""
    driver = FakeDriver(poweroff_delay=poweroff_delay)
    events, disks = _Events(), _Disks()
    node = NodeService(
        driver=driver,
        network=FakeNetworkDriver([1]),
        disks=disks,
        dirs=VmDirs(tmp_path / "vms"),
        suspend_dir=tmp_path / "suspend",
        images_dir=tmp_path / "images",
        events=sink or events,
        now=lambda: datetime.now(UTC),
        advertise_host="127.0.0.1",
        shutdown_grace=grace,
    )
    return node, events, disks, driver


def over_fakes(tmp_path: Path, taps: FakeHostState, **collaborators: Any) -> NodeService:
    """A node service over the fake drivers on networks 1 and 2, whose taps are ``taps`` (the
    kernel's: they outlive a node manager), with ``collaborators`` (a firewall, metadata)."""
    return NodeService(
        driver=FakeDriver(),
        network=FakeNetworkDriver([1, 2], state=taps),
        disks=_Disks(),
        dirs=VmDirs(tmp_path / "vms"),
        suspend_dir=tmp_path / "suspend",
        images_dir=tmp_path / "images",
        events=_Events(),
        now=lambda: datetime.now(UTC),
        advertise_host="127.0.0.1",
        **collaborators,
    )


async def until(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("delay", "grace"),
    [(0.05, 10.0), (3600.0, 0.2)],
    ids=["the guest powers off", "the guest ignores the button and is destroyed after the grace"],
)
def test_a_shut_down_vm_ends_and_everything_is_undone(
    tmp_path: Path, delay: float, grace: float
) -> None:
    async def scenario() -> None:
        node, events, disks, driver = make(tmp_path, poweroff_delay=delay, grace=grace)
        watcher = asyncio.create_task(pump(driver, node))
        await node.start(wire(5))
        assert [i.id for i, _, _ in node.report()] == [5]
        await node.shutdown(InstanceId(5))
        await until(lambda: events.got)
        assert [e.kind for e in events.got] == ["exited"]
        assert node.report() == []
        # the event goes out first; the clean-up (disks, then the directory) follows
        await until(lambda: not (tmp_path / "vms" / "5").exists())
        assert disks.prepared[0].released
        watcher.cancel()
        await node.close()

    asyncio.run(scenario())


@dataclass
class _Witness:
    """An event sink that notes, at each event, which VMs the node still runs: an event must
    be on its way before its VM is forgotten, or a crash between the two loses it."""

    node: NodeService | None = None
    got: list[tuple[str, list[int]]] = field(default_factory=list)

    def put(self, event: NodeEvent) -> None:
        assert self.node is not None
        self.got.append((event.kind, [i.id for i, _, _ in self.node.report()]))


def test_an_event_is_handed_on_before_its_vm_is_forgotten(tmp_path: Path) -> None:
    async def scenario() -> None:
        witness = _Witness()
        node, _, _, driver = make(tmp_path, poweroff_delay=0.0, grace=10.0, sink=witness)
        witness.node = node
        watcher = asyncio.create_task(pump(driver, node))
        await node.start(wire(5))
        await node.suspend(InstanceId(5), "5_vm5.gz")
        await until(lambda: witness.got)
        await node.start(wire(6))
        driver.crash(InstanceId(6))
        await until(lambda: len(witness.got) == 2)
        assert witness.got == [("suspended", [5]), ("exited", [6])]
        assert node.report() == []
        watcher.cancel()

    asyncio.run(scenario())


def _restarted(tmp_path: Path, target: Path | None, *, fails: bool) -> tuple[NodeService, _Events]:
    """A node manager killed while its VM 5 was being suspended to ``target`` (or migrated),
    and the one started after it, which adopts the VM."""

    async def before() -> None:
        node, _, _, driver = make(tmp_path, poweroff_delay=0.0, grace=10.0)
        await node.start(wire(5))
        FakeDriver.killed_while_sending(tmp_path / "vms" / "5", target)
        await driver.close()

    asyncio.run(before())
    node, events, _, driver = make(tmp_path, poweroff_delay=0.0, grace=10.0)
    if fails:
        driver.failing.add("finish_outgoing")
    return node, events


@pytest.mark.parametrize("fails", [False, True], ids=["finished", "failed"])
def test_a_suspend_the_dead_node_manager_left_is_finished_and_told(
    tmp_path: Path, fails: bool
) -> None:
    target = tmp_path / "suspend" / "5_vm5.gz"
    target.parent.mkdir()
    node, events = _restarted(tmp_path, target, fails=fails)

    async def scenario() -> None:
        assert await node.recover() == [InstanceId(5)]
        assert [(i.id, s) for i, _, s in node.report()] == [(5, VmState.migrating)]
        await until(lambda: events.got)
        if not fails:  # the clean-up follows the event: let it end before closing the node
            await until(lambda: not (tmp_path / "vms" / "5").exists())
        await node.close()

    asyncio.run(scenario())
    if fails:
        assert [e.kind for e in events.got] == ["suspendFailed"]
        assert [(i.id, s) for i, _, s in node.report()] == [(5, VmState.running)]
        assert not target.exists()
    else:
        assert [(e.kind, e.detail) for e in events.got] == [("suspended", "5_vm5.gz")]
        assert node.report() == []
        assert target.is_file()
        assert not (tmp_path / "vms" / "5").exists()


@pytest.mark.parametrize("fails", [False, True], ids=["finished", "failed"])
def test_a_migration_the_dead_node_manager_left_is_seen_to_its_end(
    tmp_path: Path, fails: bool
) -> None:
    node, events = _restarted(tmp_path, None, fails=fails)

    async def scenario() -> None:
        await node.recover()
        await until(lambda: not node.report() or node.report()[0][2] is VmState.running)
        await node.close()

    asyncio.run(scenario())
    assert events.got == []  # the cluster manager learns it from this host's VM list
    assert [(i.id, s) for i, _, s in node.report()] == ([(5, VmState.running)] if fails else [])


def test_a_migrated_vm_that_never_arrives_is_destroyed_not_waited_for(tmp_path: Path) -> None:
    async def scenario() -> None:
        node, _, disks, driver = make(tmp_path, poweroff_delay=0.0, grace=10.0)
        node.arrival_wait = 0.2
        await node.prepare_incoming(wire(5), 4444)  # its source never sends it
        with pytest.raises(BackendFailure, match="did not arrive"):
            await node.finish_incoming(InstanceId(5))
        assert node.report() == [] and await driver.list() == []
        assert disks.prepared[0].released
        await node.close()

    asyncio.run(scenario())


def test_a_resume_the_dead_node_manager_began_is_finished_and_told(tmp_path: Path) -> None:
    """Killed while its VM was being restored from a suspend file: the next node manager
    finishes the restore (runs the VM, deletes the file, reports ``started``), where the
    instance would otherwise wait, paused, with its file left."""
    saved = tmp_path / "suspend" / "5_vm5.gz"
    saved.parent.mkdir()

    async def before() -> None:
        node, events, _, driver = make(tmp_path, poweroff_delay=0.0, grace=10.0)
        watcher = asyncio.create_task(pump(driver, node))
        await node.start(wire(5))
        await node.suspend(InstanceId(5), saved.name)
        await until(lambda: events.got)
        await node.start(wire(5), resume_from=saved.name)
        await node.close()  # killed before its restore task ran
        watcher.cancel()
        await driver.close()

    asyncio.run(before())
    node, events, _, _ = make(tmp_path, poweroff_delay=0.0, grace=10.0)

    async def after() -> None:
        assert await node.recover() == [InstanceId(5)]
        await until(lambda: events.got)
        await node.close()

    asyncio.run(after())
    assert [e.kind for e in events.got] == ["started"]
    assert [(i.id, s) for i, _, s in node.report()] == [(5, VmState.running)]
    assert not saved.exists()


def test_a_suspend_done_before_the_node_manager_died_is_told(tmp_path: Path) -> None:
    """Killed after the suspend file was whole and the VM gone, before it said so: the next
    node manager reports the suspend instead of losing it (the instance stayed Suspending)."""
    target = tmp_path / "suspend" / "5_vm5.gz"
    target.parent.mkdir()
    target.write_bytes(b"\x1f\x8b whole")
    node, events = _restarted(tmp_path, target, fails=False)
    FakeDriver.kill_offline(tmp_path / "vms" / "5")

    async def scenario() -> None:
        assert await node.recover() == []
        await node.close()

    asyncio.run(scenario())
    assert [(e.kind, e.detail) for e in events.got] == [("suspended", "5_vm5.gz")]
    assert target.is_file() and not (tmp_path / "vms" / "5").exists()


def test_a_destroy_during_a_start_waits_for_it_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """A group's teardown destroys a member whose start is still in flight: the start ends,
    then the destroy kills what it started (before, the destroy removed the taps and the
    directory under the start, whose VM then ran without them)."""

    async def scenario() -> None:
        node, _, disks, driver = make(tmp_path, poweroff_delay=0.05, grace=10.0)
        gate = asyncio.Event()
        prepare = disks.prepare

        def slow_prepare(iid: InstanceId, specs: object) -> object:
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(5)
            return prepare(iid, specs)  # type: ignore[arg-type]

        loop = asyncio.get_running_loop()
        disks.prepare = slow_prepare  # type: ignore[method-assign]
        starting = asyncio.create_task(node.start(wire(7)))
        await until(lambda: (tmp_path / "vms" / "7").exists())
        destroying = asyncio.create_task(node.destroy(InstanceId(7)))
        await asyncio.sleep(0.05)
        assert not destroying.done()  # it waits for the start
        with pytest.raises(AlreadyExists):
            await node.start(wire(7))  # a second start of it is refused meanwhile
        gate.set()
        await starting
        await destroying
        assert node.report() == []
        assert await driver.list() == []
        assert not (tmp_path / "vms" / "7").exists()
        await node.close()

    asyncio.run(scenario())
