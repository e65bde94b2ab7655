"""The node manager's HA lease (ADR 0010): renewed by every reply, counted from before the request
was sent; once it runs out unrenewed every VM is stopped (self-fence), and logged."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from tashi.domain.clock import FakeClock
from tashi.domain.errors import Unavailable
from tashi.domain.ids import InstanceId
from tashi.nodeapi.schemas import (
    HeartbeatIn,
    HeartbeatOut,
    InstanceWire,
    RegisterIn,
    RegisterOut,
)
from tashi.nodemanager.reporting import Identity, Reporter
from tashi.vmm.base import VmState

LEASE = 10.0


@dataclass
class Cm:
    """The cluster manager as the reporter sees it: answers, or does not; each call takes
    ``delay`` seconds of the fake clock."""

    clock: FakeClock
    lease: float = LEASE
    down: bool = False
    delay: float = 0.0

    async def _answer(self) -> None:
        self.clock.advance(self.delay)
        if self.down:
            raise Unavailable("connection refused")

    async def register(self, request: RegisterIn) -> RegisterOut:
        await self._answer()
        return RegisterOut(
            hostId=1, state="Normal", heartbeatInterval=2, expireHostTime=6, leaseTime=self.lease
        )

    async def heartbeat(self, host_id: int, report: HeartbeatIn) -> HeartbeatOut:
        await self._answer()
        return HeartbeatOut(hostId=1, state="Normal", up=True, leaseTime=self.lease)


@dataclass
class Node:
    vms: dict[InstanceId, int] = field(default_factory=dict)
    destroyed: list[InstanceId] = field(default_factory=list)

    def report(self) -> list[tuple[InstanceWire, int, VmState]]:
        return [
            (
                InstanceWire(id=i, name=f"vm{i}", userId=1, cores=1, memory=64, disks=[], nics=[]),
                v,
                VmState.running,
            )
            for i, v in self.vms.items()
        ]

    async def destroy(self, iid: InstanceId) -> None:
        self.vms.pop(iid, None)
        self.destroyed.append(iid)


def reporter(clock: FakeClock, cm: Cm, node: Node) -> Reporter:
    me = Identity(name="n1", endpoint="http://127.0.0.1:1", secret="s" * 40, version="x")
    return Reporter(cm, node, me, lambda: (4096, 4), monotonic=clock.monotonic)  # type: ignore[arg-type]


def test_a_node_without_replies_past_its_lease_stops_its_vms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    cm, node = Cm(clock), Node({InstanceId(1): 11, InstanceId(2): 12})
    rep = reporter(clock, cm, node)
    assert rep.lease_deadline is None
    assert asyncio.run(rep.fence_if_expired()) == 0  # no lease yet: nothing to enforce
    asyncio.run(rep.heartbeat())  # registers
    start = clock.monotonic()
    assert rep.lease_deadline == start + LEASE
    cm.down = True
    for _ in range(4):
        clock.advance(2.0)
        with pytest.raises(Unavailable):
            asyncio.run(rep.heartbeat())
        assert asyncio.run(rep.fence_if_expired()) == 0
    clock.advance(LEASE - 8.0)  # exactly at the deadline: still leased
    assert asyncio.run(rep.fence_if_expired()) == 0 and len(node.vms) == 2
    clock.advance(0.1)
    with caplog.at_level(logging.ERROR, logger="tashi.nodemanager.reporting"):
        assert asyncio.run(rep.fence_if_expired()) == 2
    assert node.vms == {} and sorted(node.destroyed) == [1, 2]
    assert "self-fence" in caplog.text and "2 VM(s)" in caplog.text
    node.vms[InstanceId(3)] = 13  # whatever appears while the lease is out goes too
    assert asyncio.run(rep.fence_if_expired()) == 1


def test_the_lease_counts_from_before_the_request_and_a_reply_renews_it() -> None:
    clock = FakeClock()
    cm, node = Cm(clock, delay=1.5), Node({InstanceId(1): 11})
    rep = reporter(clock, cm, node)
    sent = clock.monotonic()
    asyncio.run(rep.heartbeat())
    assert rep.lease_deadline == sent + LEASE  # not from when the slow reply came
    clock.advance(LEASE - 3)
    sent = clock.monotonic()
    asyncio.run(rep.heartbeat())
    assert rep.lease_deadline == sent + LEASE
    clock.advance(LEASE - 2)
    assert asyncio.run(rep.fence_if_expired()) == 0 and node.vms


def test_a_cluster_manager_without_ha_grants_no_lease() -> None:
    clock = FakeClock()
    cm, node = Cm(clock, lease=0.0), Node({InstanceId(1): 11})
    rep = reporter(clock, cm, node)
    asyncio.run(rep.heartbeat())
    clock.advance(3600)
    assert rep.lease_deadline is None and asyncio.run(rep.fence_if_expired()) == 0
