"""The change feed: which writes bump its version, and how a waiter is answered."""

from __future__ import annotations

import asyncio
import time

from tashi.clustermanager.database import Database
from tashi.clustermanager.watch import ChangeFeed
from tashi.domain.clock import SystemClock
from tashi.domain.models import NicConfig
from tashi.domain.states import InstanceState
from tashi.storage.memory import MemoryStore
from tests.storage.test_contract import NET, NET2, seed, spec


def test_placement_relevant_writes_bump_and_heartbeats_do_not() -> None:
    async def scenario() -> list[int]:
        db = Database(MemoryStore(), workers=2)
        now = SystemClock().now()
        seen = [db.feed.version]

        async def step(work: object) -> None:
            await db.write(work)  # type: ignore[arg-type]
            await asyncio.sleep(0)  # the bump is scheduled from the writer thread
            await asyncio.sleep(0)
            seen.append(db.feed.version)

        host = await db.write(
            lambda tx: tx.hosts.add("h1", memory=1024, cores=2, version="x", now=now)
        )
        await asyncio.sleep(0)
        seen.append(db.feed.version)  # registered: bump
        await step(lambda tx: tx.hosts.update(host.id, last_heartbeat=now, load=0.5))  # no
        await step(lambda tx: tx.hosts.update(host.id, up=True))  # up: bump
        await step(lambda tx: tx.hosts.update(host.id, up=True, memory=1024, load=2.0))  # no
        await step(lambda tx: tx.hosts.update(host.id, memory=2048))  # capacity: bump
        await step(lambda tx: tx.hosts.update(host.id, notes="hello"))  # no
        db.close()
        return seen

    assert asyncio.run(scenario()) == [0, 1, 1, 2, 2, 3, 3]


def test_a_nic_added_or_removed_bumps() -> None:
    """The scheduler's hooks act on NICs hot-plugged into a running instance (the DhcpDns hook
    gives them addresses): adding or removing one wakes it, as a state change would."""

    async def scenario() -> list[int]:
        store = MemoryStore()
        user = seed(store)
        db = Database(store, workers=2)
        now = SystemClock().now()
        first = NicConfig(NET, "52:54:00:00:30:00")
        inst = await db.write(
            lambda tx: tx.instances.add(user, spec("vm", first), unique_name=False, now=now)
        )
        await asyncio.sleep(0)
        seen = [db.feed.version]
        pending = InstanceState.Pending
        second = NicConfig(NET2, "52:54:00:00:30:01")
        for work in (
            lambda tx: tx.instances.add_nic(inst.id, pending, second, now=now),
            lambda tx: tx.instances.remove_nic(inst.id, pending, second.mac, now=now),
        ):
            await db.write(work)
            await asyncio.sleep(0)  # the bump is scheduled from the writer thread
            await asyncio.sleep(0)
            seen.append(db.feed.version)
        db.close()
        return seen

    before, added, removed = asyncio.run(scenario())
    assert (added, removed) == (before + 1, before + 2)


def test_a_waiter_is_answered_at_once_on_a_new_version_or_after_its_timeout() -> None:
    async def scenario() -> tuple[int, float, int, int]:
        feed = ChangeFeed()
        started = time.monotonic()
        idle = await feed.wait(0, 0.2)
        idle_for = time.monotonic() - started
        stale = await feed.wait(7, 10.0)  # a restarted CM: the caller's version is unknown
        waiter = asyncio.create_task(feed.wait(0, 10.0))
        await asyncio.sleep(0)
        feed.bump()
        return idle, idle_for, stale, await asyncio.wait_for(waiter, 1.0)

    idle, idle_for, stale, woke = asyncio.run(scenario())
    assert (idle, stale, woke) == (0, 0, 1)
    assert idle_for >= 0.19
