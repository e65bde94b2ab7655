"""The publisher's bounded queue (``tashi.xmpp.outbox``): order, drop-oldest with a count,
give-back, and a taker that waits."""

from __future__ import annotations

import asyncio

import pytest

from tashi.xmpp.outbox import Outbox, drain


def doc(n: int) -> dict[str, object]:
    return {"seq": n}


def test_a_full_outbox_drops_the_oldest_and_counts() -> None:
    box = Outbox(3)
    for n in range(1, 6):
        box.put(doc(n))
    assert box.snapshot() == [doc(3), doc(4), doc(5)]
    assert (box.dropped, box.put_count, len(box)) == (2, 5, 3)


def test_take_in_order_and_give_back_in_front() -> None:
    async def scenario() -> None:
        box = Outbox(3)
        box.put(doc(1))
        box.put(doc(2))
        first = await box.take()
        assert first == doc(1)
        box.give_back(first)
        assert box.snapshot() == [doc(1), doc(2)]
        box.put(doc(3))
        box.give_back(doc(0))  # full: it would be the oldest, so it is the one dropped
        assert box.snapshot() == [doc(1), doc(2), doc(3)] and box.dropped == 1

    asyncio.run(scenario())


def test_take_waits_for_a_document() -> None:
    async def scenario() -> None:
        box = Outbox(2)
        taker = asyncio.create_task(box.take())
        await asyncio.sleep(0.01)
        assert not taker.done()
        box.put(doc(7))
        assert await asyncio.wait_for(taker, 1) == doc(7)

    asyncio.run(scenario())


def test_put_never_waits_even_with_no_taker() -> None:
    box = Outbox(100)
    for n in range(100_000):
        box.put(doc(n))
    assert len(box) == 100 and box.dropped == 99_900
    assert box.snapshot()[0] == doc(99_900)


def test_an_outbox_holds_something() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Outbox(0)


def test_drain_sends_in_order_and_stops_at_a_failure_keeping_the_document() -> None:
    async def scenario() -> tuple[list[object], list[dict[str, object]]]:
        box, connected, sent = Outbox(10), asyncio.Event(), []
        for n in range(1, 4):
            box.put(doc(n))

        async def send(document: dict[str, object]) -> bool:
            if document["seq"] == 3:
                return False  # the connection dropped
            sent.append(document["seq"])
            return True

        drained = asyncio.create_task(drain(box, connected, send))
        await asyncio.sleep(0.01)
        assert sent == []  # nothing before the connection
        connected.set()
        await asyncio.wait_for(drained, 1)
        return sent, box.snapshot()

    sent, left = asyncio.run(scenario())
    assert sent == [1, 2] and left == [doc(3)]
