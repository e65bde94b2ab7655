"""The node manager's HA lease (ADR 0010): a grant from the cluster manager or any witness keeps
it, counted from before the request was sent; once it runs out with no grant from anyone every
VM is stopped (self-fence), marked fenced and reported until acknowledged; a grant that comes
after the deadline is honoured only once the fence has run; the deadline is published for the
watchdog and carried over by a restarted node manager; a host alone never fences."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tashi.domain.clock import FakeClock
from tashi.domain.errors import NotAuthenticated, Unavailable
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import Instance
from tashi.domain.nodes import Acknowledged, Heartbeat, Registration, WitnessSet
from tashi.domain.nodes import Witness as WitnessContact
from tashi.domain.states import InstanceState
from tashi.nodeapi import convert, peering
from tashi.nodeapi.schemas import (
    HeartbeatIn,
    HeartbeatOut,
    RegisterIn,
    RegisterOut,
    WitnessSetWire,
    WitnessWire,
)
from tashi.nodemanager import fencing
from tashi.nodemanager.fencing import FenceMarks
from tashi.nodemanager.lease import HostLease, witness_key
from tashi.nodemanager.outbox import Outbox
from tashi.nodemanager.reporting import Identity, Reporter
from tashi.nodemanager.witnessing import Renewer, WitnessBook, peer_secret
from tashi.vmm.base import VmState

LEASE = 10.0
W2 = WitnessWire(hostId=2, endpoint="http://127.0.0.1:2", token="t2")
W3 = WitnessWire(hostId=3, endpoint="http://127.0.0.1:3", token="t3")


def witness_set(epoch: int, hosts: list[WitnessWire]) -> WitnessSet:
    return convert.witness_set(WitnessSetWire(epoch=epoch, hosts=hosts))


@dataclass
class Cm:
    """The cluster manager as the reporter sees it: answers, or does not; each call takes
    ``delay`` seconds of the fake clock. It keeps what it was sent, and answers, as they
    travel (``nodeapi.convert``)."""

    clock: FakeClock
    lease: float = LEASE
    down: bool = False
    delay: float = 0.0
    witnesses: WitnessSetWire | None = field(
        default_factory=lambda: WitnessSetWire(epoch=1, hosts=[W2, W3])
    )
    sent: list[RegisterIn | HeartbeatIn] = field(default_factory=list)

    async def _answer(self, request: RegisterIn | HeartbeatIn) -> None:
        self.clock.advance(self.delay)
        if self.down:
            raise Unavailable("connection refused")
        self.sent.append(request)

    async def register(self, request: Registration) -> Acknowledged:
        await self._answer(convert.registration_wire(request))
        return convert.acknowledged(
            RegisterOut(
                hostId=1,
                state="Normal",
                heartbeatInterval=2,
                expireHostTime=6,
                leaseTime=self.lease,
                witnesses=self.witnesses,
            )
        )

    async def heartbeat(self, host_id: int, report: Heartbeat) -> Acknowledged:
        await self._answer(convert.heartbeat_wire(report))
        return convert.acknowledged(
            HeartbeatOut(
                hostId=1, state="Normal", up=True, leaseTime=self.lease, witnesses=self.witnesses
            )
        )


@dataclass
class Node:
    vms: dict[InstanceId, int] = field(default_factory=dict)
    destroyed: list[InstanceId] = field(default_factory=list)

    def report(self) -> list[tuple[Instance, int, VmState]]:
        return [
            (
                Instance(
                    id=i,
                    name=f"vm{i}",
                    user_id=UserId(1),
                    state=InstanceState.Running,
                    cores=1,
                    memory=64,
                    disks=(),
                    nics=(),
                ),
                v,
                VmState.running,
            )
            for i, v in self.vms.items()
        ]

    async def destroy(self, iid: InstanceId) -> None:
        self.vms.pop(iid, None)
        self.destroyed.append(iid)


@dataclass
class Witness:
    """A witness host as the renewer sees it."""

    endpoint: str
    bearer: str
    up: bool = True
    asked: int = 0

    async def renew(self, host_id: int) -> bool:
        self.asked += 1
        if not self.up:
            raise Unavailable("witness down")
        return True

    async def close(self) -> None:
        return None


@dataclass
class Host:
    clock: FakeClock
    state_dir: Path
    cm: Cm
    node: Node
    lease: HostLease
    marks: FenceMarks
    reporter: Reporter
    witnesses: dict[int, Witness]
    renewer: Renewer

    def beat(self) -> None:
        asyncio.run(self.reporter.heartbeat())

    def fence(self) -> int:
        return asyncio.run(self.reporter.fence_if_expired())

    def renew(self) -> int:
        return asyncio.run(self.renewer.renew())


def make_host(tmp: Path, clock: FakeClock | None = None, **cm: object) -> Host:
    clock = clock or FakeClock()
    tmp.mkdir(exist_ok=True)
    lease = HostLease(tmp, monotonic=clock.monotonic)
    marks = FenceMarks(tmp)
    the_cm, node = Cm(clock, **cm), Node({InstanceId(1): 11, InstanceId(2): 12})  # type: ignore[arg-type]
    me = Identity(name="n1", endpoint="http://127.0.0.1:1", secret="s" * 40, version="x")
    reporter = Reporter(
        the_cm,  # type: ignore[arg-type]
        node,  # type: ignore[arg-type]
        me,
        lambda: (4096, 4),
        lease=lease,
        marks=marks,
        outbox=Outbox(tmp),
        monotonic=clock.monotonic,
    )
    witnesses = {w.hostId: Witness(w.endpoint, w.token) for w in (W2, W3)}

    def connect(w: WitnessContact) -> Witness:
        return witnesses.setdefault(w.host_id, Witness(w.endpoint, w.token))

    renewer = Renewer(lease, monotonic=clock.monotonic, connect=connect)
    return Host(clock, tmp, the_cm, node, lease, marks, reporter, witnesses, renewer)


def test_a_node_without_grants_past_its_lease_stops_its_vms_and_reports_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = make_host(tmp_path, witnesses=WitnessSetWire(epoch=1, hosts=[W2]))
    assert h.lease.deadline() is None and h.fence() == 0  # no lease yet: nothing to enforce
    h.beat()  # registers
    start = h.clock.monotonic()
    assert h.lease.deadline() == start + LEASE
    h.cm.down = True  # and the witness too: the host is cut off from everyone
    for _ in range(4):
        h.clock.advance(2.0)
        h.witnesses[2].up = False
        assert h.renew() == 0
        with pytest.raises(Unavailable):
            h.beat()
        assert h.fence() == 0
    h.clock.advance(LEASE - 8.0)  # exactly at the deadline: still leased
    assert h.fence() == 0 and len(h.node.vms) == 2
    h.clock.advance(0.1)
    with caplog.at_level(logging.ERROR, logger="tashi.nodemanager.reporting"):
        assert h.fence() == 2
    assert h.node.vms == {} and sorted(h.node.destroyed) == [1, 2]
    assert "self-fence" in caplog.text and "2 VM(s)" in caplog.text
    assert h.marks.ids() == [1, 2]
    h.node.vms[InstanceId(3)] = 13  # whatever appears while the lease is out goes too
    assert h.fence() == 1 and h.marks.ids() == [1, 2, 3]
    h.cm.down = False
    h.beat()  # the reply acknowledges them
    assert h.cm.sent[-1].fenced == [1, 2, 3] and h.marks.ids() == []
    h.beat()
    assert h.cm.sent[-1].fenced == []


def test_a_witness_keeps_the_lease_while_the_cluster_manager_is_away(tmp_path: Path) -> None:
    h = make_host(tmp_path)
    h.beat()  # registers, learns its witnesses, and says at once that it uses them
    assert [s.witnessEpoch for s in h.cm.sent] == [None, 1]
    h.beat()
    assert [s.witnessEpoch for s in h.cm.sent] == [None, 1, 1]
    h.cm.down = True
    for _ in range(100):  # 200 s with no cluster manager
        h.clock.advance(2.0)
        h.witnesses[2].up = h.witnesses[3].up = True
        h.witnesses[2 if h.clock.monotonic() % 4 else 3].up = False  # one of two answers
        assert h.renew() == 1
        assert h.fence() == 0
    assert len(h.node.vms) == 2 and h.marks.ids() == []
    assert h.witnesses[2].asked == h.witnesses[3].asked == 100


def test_the_lease_counts_from_before_the_request(tmp_path: Path) -> None:
    h = make_host(tmp_path, delay=1.5)
    h.beat()  # registers, then acknowledges its witnesses with a second request
    sent = h.clock.monotonic()
    h.beat()
    assert h.lease.deadline() == sent + LEASE  # not from when the slow reply came
    h.clock.advance(LEASE - 3)
    sent = h.clock.monotonic()
    h.beat()
    assert h.lease.deadline() == sent + LEASE


def test_a_grant_after_the_deadline_still_fences_first(tmp_path: Path) -> None:
    """Between the deadline and the grant the cluster manager may have restarted the VMs
    elsewhere: they must stop even though the lease is valid again."""
    h = make_host(tmp_path)
    h.beat()
    published = fencing.read_deadline(tmp_path)
    assert published == h.lease.deadline()
    h.clock.advance(LEASE + 1)
    h.lease.grant(witness_key(2), h.clock.monotonic())
    assert not h.lease.expired() and h.lease.must_fence()
    assert fencing.read_deadline(tmp_path) == published  # the watchdog keeps the passed one
    assert h.fence() == 2 and h.node.vms == {}
    assert not h.lease.must_fence()
    assert fencing.read_deadline(tmp_path) == h.lease.deadline() != published


def test_a_restarted_node_manager_carries_the_deadline_and_witnesses(tmp_path: Path) -> None:
    clock = FakeClock()
    h = make_host(tmp_path, clock)
    h.beat()
    deadline = h.lease.deadline()
    again = HostLease(tmp_path, monotonic=clock.monotonic)
    assert again.deadline() == deadline and again.host_id == 1
    assert again.witnesses is not None and [w.host_id for w in again.witnesses.hosts] == [2, 3]
    clock.advance(LEASE + 0.1)
    assert again.must_fence()


def test_a_new_witness_set_drops_the_grants_of_hosts_left_out(tmp_path: Path) -> None:
    h = make_host(tmp_path)
    h.beat()
    h.clock.advance(5)
    h.renew()  # both witnesses grant at t+5
    h.lease.learn(HostId(1), LEASE, witness_set(2, [W3]))
    h.lease.learn(HostId(1), LEASE, witness_set(3, []))  # then alone
    assert h.lease.deadline() is None  # alone: no lease that can run out
    h.lease.learn(HostId(1), LEASE, witness_set(4, [W2]))
    assert h.lease.deadline() == h.clock.monotonic() - 5 + LEASE  # the CM's grant only


def test_a_host_alone_or_without_ha_never_fences(tmp_path: Path) -> None:
    alone = make_host(tmp_path / "a", witnesses=WitnessSetWire(epoch=1, hosts=[]))
    off = make_host(tmp_path / "b", lease=0.0, witnesses=None)
    for h in (alone, off):
        h.beat()
        h.cm.down = True
        h.clock.advance(3600)
        assert h.lease.deadline() is None and h.fence() == 0 and len(h.node.vms) == 2
        assert fencing.read_deadline(h.state_dir) is None


def test_a_witness_grants_only_with_the_token_for_that_host(tmp_path: Path) -> None:
    clock = FakeClock()
    secret = peer_secret(tmp_path)
    assert peer_secret(tmp_path) == secret  # kept
    assert (tmp_path / "peer-secret").stat().st_mode & 0o777 == 0o600
    book = WitnessBook(secret, monotonic=clock.monotonic)
    clock.advance(4)
    assert convert.grant_wire(book.report(HostId(7))).model_dump() == {
        "hostId": 7,
        "lastGrantAge": None,
        "uptime": 4.0,
    }
    assert book.grant(7, peering.token(secret, 7))
    with pytest.raises(NotAuthenticated):
        book.grant(8, peering.token(secret, 7))  # host 7's token does not speak for host 8
    with pytest.raises(NotAuthenticated):
        book.grant(7, peering.token("another secret", 7))
    clock.advance(2.5)
    assert book.report(HostId(7)).last_grant_age == 2.5
    assert book.report(HostId(8)).last_grant_age is None


def test_the_cluster_managers_grant_alone_keeps_the_lease(tmp_path: Path) -> None:
    h = make_host(tmp_path)
    for _ in range(20):
        h.beat()
        for w in h.witnesses.values():
            w.up = False
        h.renew()
        h.clock.advance(2)
        assert h.fence() == 0
    assert len(h.node.vms) == 2
    h.cm.down = True
    h.clock.advance(LEASE)
    assert h.fence() == 2  # with neither, it runs out


def test_a_vm_marked_fenced_is_reported_fenced_not_running(tmp_path: Path) -> None:
    """The watchdog marked a VM fenced (and is killing it) while the node manager still counts
    it: one report saying both would be taken for running and the fence forgotten."""
    h = make_host(tmp_path)
    h.marks.add(InstanceId(1))  # the watchdog's mark; VM 1 still in the node's list
    h.beat()  # registers (then beats again for the new witness set)
    sent = h.cm.sent[0]
    assert sent.fenced == [1]
    assert [v.instanceId for v in sent.vms] == [2]
