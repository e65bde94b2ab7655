"""The agent against a real tashi-cm and fake-driver node managers (real processes)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api.schemas import DiskIn, InstanceIn
from tashi.scheduler.agent import Agent, AgentOptions
from tashi.scheduler.policies import registry
from tashi.scheduler.policies.base import PolicyOptions
from tests.e2e.harness import Cluster, wait_for
from tests.scheduler import live

DISK = [DiskIn(uri="disk.img")]


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Cluster]:
    with live.cluster(tmp_path, nodes=2) as cluster:
        yield cluster


def states(c: Cluster) -> dict[str, tuple[str, int | None, str | None]]:
    return {i.name: (i.state, i.hostId, i.reason) for i in c.admin.get_instances()}


def test_a_round_places_what_fits_and_holds_the_rest_with_a_reason(c: Cluster) -> None:
    # Fake hosts have 16384 MB: two 8192 MB VMs each, so the fifth waits.
    for i in range(5):
        c.admin.create_vm(InstanceIn(name=f"big{i}", memory=8192, disks=DISK))

    async def scenario() -> tuple[int, int]:
        client = live.agent_client(c)
        agent = Agent(client, registry.create("primitive", PolicyOptions()), ())
        try:
            result = await agent.round()
            return result.placed, result.held
        finally:
            await client.close()

    assert asyncio.run(scenario()) == (4, 1)
    now = states(c)
    assert now["big4"][0] == "Held" and "8192 MB" in (now["big4"][2] or "")
    hosts = [now[f"big{i}"][1] for i in range(4)]
    assert sorted(hosts.count(h) for h in set(hosts)) == [2, 2]  # spread
    used = {h.name: (h.usedMemory, h.instances) for h in c.admin.get_hosts()}
    assert used == {"n1": (16384, 2), "n2": (16384, 2)}


def test_the_change_feed_wakes_a_waiter_at_once_and_idles_otherwise(c: Cluster) -> None:
    async def scenario() -> tuple[float, float, int, int]:
        client = live.agent_client(c)
        try:
            version = await client.changes(0, 0)
            started = time.monotonic()
            idle = await client.changes(version, 1.0)
            idle_for = time.monotonic() - started
            waiter = asyncio.create_task(client.changes(version, 20.0))
            await asyncio.sleep(0)  # let the long-poll reach the CM before the write
            await asyncio.to_thread(c.admin.create_vm, InstanceIn(name="wake", disks=DISK))
            started = time.monotonic()
            woke = await waiter
            return idle_for, time.monotonic() - started, idle, woke - version
        finally:
            await client.close()

    idle_for, woke_after, idle, bumped = asyncio.run(scenario())
    assert idle_for >= 0.9 and idle >= 0
    assert bumped >= 1
    assert woke_after < 5.0  # well before the 20 s timeout


def test_the_scheduler_daemon_runs_createvm_to_running_and_retries_held(c: Cluster) -> None:
    with live.scheduler(c) as process:
        for i in range(5):
            c.admin.create_vm(InstanceIn(name=f"vm{i}", memory=8192, disks=DISK))
        wait_for(
            "four Running and one Held",
            lambda: (
                sorted(s for s, _, _ in states(c).values())
                == ["Held", "Running", "Running", "Running", "Running"]
            ),
            timeout=30,
        )
        held = next(n for n, (s, _, _) in states(c).items() if s == "Held")
        victim = next(n for n, (s, _, _) in states(c).items() if s == "Running")
        c.admin.destroy_vm(victim)
        # Capacity grew: the held instance is placed without waiting for its back-off.
        wait_for(f"{held} to run", lambda: states(c).get(held, ("",))[0] == "Running", timeout=30)
        history = [e.kind for e in c.admin.get_instance_history(held)]
        assert history, "the hold and the placement are in the instance's history"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    log = (c.root / "sched.log").read_text()
    assert "policy primitive" in log and "Traceback" not in log


def test_the_agent_refuses_a_bad_configuration(c: Cluster) -> None:
    with live.scheduler(c, "bad", loadExpression="__import__('os')") as process:
        assert process.wait(timeout=30) == 2
    assert "loadExpression" in (c.root / "bad.log").read_text()


def test_agent_options_are_the_documented_defaults() -> None:
    assert AgentOptions().schedule_delay == 2.0
