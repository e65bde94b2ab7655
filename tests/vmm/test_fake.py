"""What the fake driver adds to the contract: its test hooks, and being cheap at scale.

The contract itself is in ``test_contract.py``; these are the fake's promises to the node
manager's unit tests and to simulations of many hosts.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest

from tashi.domain.errors import BackendFailure, Unavailable
from tashi.domain.ids import InstanceId
from tashi.vmm.base import Capability, DiskSpec, MigrationTicket, VmSpec
from tashi.vmm.base import VmState as S
from tashi.vmm.fake import FakeDriver
from tests.vmm.lab import next_exit

pytestmark = pytest.mark.anyio


def spec(root: Path, instance_id: int) -> VmSpec:
    return VmSpec(
        instance_id=InstanceId(instance_id),
        name=f"vm{instance_id}",
        cores=1,
        memory=256,
        disks=[DiskSpec(root / f"{instance_id}.qcow2")],
        nics=[],
        state_dir=root / str(instance_id),
    )


async def test_a_vm_that_stops_by_itself_is_news(tmp_path: Path) -> None:
    driver = FakeDriver()
    await driver.start(spec(tmp_path, 1))
    driver.guest_pause(InstanceId(1))
    event = await anext(aiter(driver.events()))
    assert (event.instance_id, event.state) == (1, S.paused)
    await driver.unpause(InstanceId(1))
    assert [s.state for s in await driver.list()] == [S.running]


async def test_failing_operations_and_missing_capabilities(tmp_path: Path) -> None:
    driver = FakeDriver(failing={"suspend"}, capabilities={Capability.suspend})
    await driver.start(spec(tmp_path, 1))
    with pytest.raises(BackendFailure):
        await driver.suspend(InstanceId(1), tmp_path / "s.gz")
    with pytest.raises(Unavailable):
        await driver.pause(InstanceId(1))
    assert [s.state for s in await driver.list()] == [S.running]


async def test_a_ticket_is_taken_by_one_target_only(tmp_path: Path) -> None:
    first, second = FakeDriver(), FakeDriver()
    ticket = MigrationTicket("10.0.0.2", 4444)
    await first.start(spec(tmp_path / "a", 1), incoming=ticket)
    with pytest.raises(BackendFailure):
        await second.start(spec(tmp_path / "b", 2), incoming=ticket)
    await first.destroy(InstanceId(1))
    await second.start(spec(tmp_path / "b", 2), incoming=ticket)  # free again
    await second.close()


async def test_a_poweroff_comes_after_the_delay_without_a_task(tmp_path: Path) -> None:
    driver = FakeDriver(poweroff_delay=0.05)
    before = asyncio.all_tasks()
    await driver.start(spec(tmp_path, 1))
    await driver.shutdown(InstanceId(1))
    assert [s.state for s in await driver.list()] == [S.shutting_down]
    assert asyncio.all_tasks() == before  # no task per VM
    assert (await next_exit(driver, InstanceId(1))).reason is not None


async def test_a_thousand_vms_on_a_hundred_hosts_are_cheap(tmp_path: Path) -> None:
    hosts = [FakeDriver() for _ in range(100)]
    before = asyncio.all_tasks()
    tracemalloc.start()
    for n in range(1000):
        await hosts[n % 100].start(spec(tmp_path, n))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sum([len(await host.list()) for host in hosts]) == 1000
    assert size / 1000 < 20_000  # bytes per VM, files aside
    assert asyncio.all_tasks() == before
    for n in range(1000):
        await hosts[n % 100].destroy(InstanceId(n))
    assert not any([await host.list() for host in hosts])
