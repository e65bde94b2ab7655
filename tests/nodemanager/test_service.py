"""NodeService over the fake VMM and network drivers: what it reports, and the shutdown grace."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tashi.domain.ids import InstanceId
from tashi.domain.models import DiskConfig
from tashi.network.fake import FakeNetworkDriver
from tashi.nodeapi.schemas import DiskWire, InstanceWire, NicWire, VmEvent
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


@dataclass
class _Disks:
    prepared: list[_Prepared] = field(default_factory=list)

    def prepare(self, instance_id: InstanceId, disks: Sequence[DiskConfig]) -> _Prepared:
        self.prepared.append(
            _Prepared([DiskSpec(path=Path("/nonexistent") / d.uri) for d in disks])
        )
        return self.prepared[-1]

    def adopt(self, instance_id: InstanceId, disks: Sequence[DiskConfig]) -> _Prepared:
        return self.prepare(instance_id, disks)

    def discard(self, instance_id: InstanceId) -> None:
        """Nothing on disk."""


@dataclass
class _Events:
    got: list[VmEvent] = field(default_factory=list)

    def put(self, event: VmEvent) -> None:
        self.got.append(event)


def wire(iid: int) -> InstanceWire:
    return InstanceWire(
        id=iid,
        name=f"vm{iid}",
        userId=1,
        cores=1,
        memory=64,
        disks=[DiskWire(uri="a.img")],
        nics=[NicWire(network=1, mac="52:54:00:00:00:01")],
    )


async def pump(driver: FakeDriver, node: NodeService) -> None:
    async for event in driver.events():
        if event.state is VmState.exited:
            await node.on_exit(event.instance_id, "")


def make(
    tmp_path: Path, *, poweroff_delay: float, grace: float
) -> tuple[NodeService, _Events, _Disks, FakeDriver]:
    driver = FakeDriver(poweroff_delay=poweroff_delay)
    events, disks = _Events(), _Disks()
    node = NodeService(
        driver=driver,
        network=FakeNetworkDriver([1]),
        disks=disks,
        dirs=VmDirs(tmp_path / "vms"),
        suspend_dir=tmp_path / "suspend",
        images_dir=tmp_path / "images",
        events=events,
        now=lambda: datetime.now(UTC),
        advertise_host="127.0.0.1",
        shutdown_grace=grace,
    )
    return node, events, disks, driver


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
        assert disks.prepared[0].released
        assert not (tmp_path / "vms" / "5").exists()
        watcher.cancel()
        await node.close()

    asyncio.run(scenario())
