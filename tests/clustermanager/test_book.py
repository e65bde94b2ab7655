"""The book of settled host reports (ADR 0023), alone: which heartbeat may be a renewal, what a
touch reaches, and the full report every ``FULL_EVERY`` seconds."""

from __future__ import annotations

import asyncio

from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts.book import HostBook, same_ring
from tashi.clustermanager.hosts.renewals import Renewals
from tashi.domain.clock import FakeClock
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import Instance
from tashi.domain.nodes import Heartbeat, Renewal, VmReport, WitnessSet, heartbeat_key
from tashi.domain.states import HostState, InstanceState
from tashi.storage.memory import MemoryStore

NODE = UserId(7)
H1, H2, H3 = HostId(1), HostId(2), HostId(3)


def beat(*vms: tuple[int, str], epoch: int | None = 1, **more: object) -> Heartbeat:
    reports = tuple(
        VmReport(
            Instance(InstanceId(i), f"vm{i}", NODE, InstanceState.Running, 1, 64, (), ()),
            70 + i,
            s,
        )
        for i, s in vms
    )
    return Heartbeat(vms=reports, witness_epoch=epoch, memory=4096, **more)  # type: ignore[arg-type]


def settled(book: HostBook, host: HostId, report: Heartbeat, *on_host: int) -> None:
    witnesses = (WitnessSet(epoch=1, hosts=()), (H2, H3), False)
    book.settle(
        host,
        user_id=NODE,
        state=HostState.Normal,
        beat=report,
        witnesses=witnesses,
        instances=[InstanceId(i) for i in on_host],
        mark=book.mark(host),
    )


def test_only_the_same_report_of_an_untouched_host_by_its_node_is_a_renewal() -> None:
    book = HostBook(FakeClock())
    report = beat((5, "running"), (6, "paused"))
    assert book.quick(H1, NODE, heartbeat_key(report)) is None  # nothing settled yet
    settled(book, H1, report, 5, 6)
    assert book.quick(H1, NODE, heartbeat_key(beat((5, "running"), (6, "paused")))) is not None
    assert (
        book.quick(H1, NODE, heartbeat_key(beat((5, "running"), (6, "paused"), load=3.0)))
        is not None
    )
    assert book.quick(H1, UserId(8), heartbeat_key(report)) is None  # another node account
    assert book.quick(H1, NODE, heartbeat_key(beat((5, "running")))) is None
    assert book.quick(H1, NODE, heartbeat_key(beat((5, "running"), (6, "running")))) is None
    assert book.quick(H1, NODE, heartbeat_key(beat((5, "running"), (6, "paused"), epoch=2))) is None
    assert book.quick(H2, NODE, heartbeat_key(report)) is None


def test_a_report_of_another_security_group_policy_is_not_a_renewal() -> None:
    """The version of the policy the node enforces is in the key: a node that lost its policy
    (or took a new one) reports the whole way, where the cluster manager hears of it."""
    book = HostBook(FakeClock())
    report = beat((5, "running"), firewall="a" * 24)
    settled(book, H1, report, 5)
    assert book.quick(H1, NODE, heartbeat_key(beat((5, "running"), firewall="a" * 24)))
    assert book.quick(H1, NODE, heartbeat_key(beat((5, "running"), firewall="b" * 24))) is None
    assert book.quick(H1, NODE, heartbeat_key(beat((5, "running")))) is None  # says none now


def test_a_touch_of_the_host_or_its_instance_or_its_witness_stales_the_entry() -> None:
    book = HostBook(FakeClock())
    report = beat((5, "running"))
    settled(book, H1, report, 5)
    book.touch({H1}, set(), reporting=H1)  # its own report's write
    book.touch(set(), {5}, reporting=H1)
    book.touch({H3 + 10}, {99}, reporting=None)  # others'
    assert book.quick(H1, NODE, heartbeat_key(report)) is not None
    book.touch(set(), {5}, reporting=None)  # a user's request on its instance
    assert book.quick(H1, NODE, heartbeat_key(report)) is None
    settled(book, H1, report, 5)
    book.touch({H3}, set(), reporting=H3)  # a witness's own report: not a change
    assert book.quick(H1, NODE, heartbeat_key(report)) is not None
    book.touch({H3}, set(), reporting=None)  # the witness registered again, say
    assert book.quick(H1, NODE, heartbeat_key(report)) is None
    settled(book, H1, report, 5)
    book.forget(H1)
    assert book.quick(H1, NODE, heartbeat_key(report)) is None and len(book) == 0


def test_a_report_goes_the_whole_way_at_least_every_full_every_seconds() -> None:
    clock = FakeClock()
    book = HostBook(clock, full_every=300.0)
    report = beat()
    settled(book, H1, report)
    clock.advance(300.0)
    assert (
        book.quick(H1, NODE, heartbeat_key(report)) is not None
    )  # the spread by host id: 1 s more
    clock.advance(1.0)
    assert book.quick(H1, NODE, heartbeat_key(report)) is None


def test_the_same_ring_prefix_keeps_the_witnesses() -> None:
    ring = [H1, H2, H3, HostId(4)]
    assert same_ring(ring, H1, (H2, H3)) and same_ring(ring, HostId(4), (H1, H2))
    assert not same_ring([H1, H3, HostId(4)], H1, (H2, H3))
    assert not same_ring([H1, H2], H1, (H2, H3))
    assert same_ring(ring, H1, ())
    # the ring ran short of witnesses then: a host more changes them
    assert same_ring([H1, H2], H1, (H2,), short=True)
    assert not same_ring([H1, H2, H3], H1, (H2,), short=True)


def test_renewals_queued_together_are_written_in_one_transaction() -> None:
    async def run() -> tuple[list[bool], int, int]:
        store = MemoryStore()
        db = Database(store)
        now = FakeClock().now()

        def seed(tx):  # type: ignore[no-untyped-def]
            for name in ("h1", "h2", "h3"):
                host = tx.hosts.add(name, memory=1, cores=1, version="x", now=now)
                tx.hosts.update(host.id, up=name != "h3")

        await db.write(seed)
        renewals = Renewals(db)
        stepping = asyncio.create_task(_steps(renewals))
        await asyncio.sleep(0)  # the step waits for renewals
        answers = await asyncio.gather(
            *(renewals.renew(Renewal(HostId(h), now, 0.5, None)) for h in (1, 2, 3, 1, 2))
        )
        stepping.cancel()
        db.close()
        return answers, renewals.batches, renewals.renewed

    answers, batches, renewed = asyncio.run(run())
    assert answers == [True, True, False, True, True]
    assert (batches, renewed) == (1, 5)


async def _steps(renewals: Renewals) -> None:
    while True:
        await renewals.step()
