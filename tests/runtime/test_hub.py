"""The in-process event hub: handlers by exact event type, in the order they subscribed, one
event after the other; a failing handler is logged with its traceback and the others run."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from tashi.runtime.hub import EventHub


@dataclass(frozen=True)
class Started:
    name: str


@dataclass(frozen=True)
class Stopped:
    name: str


@dataclass(frozen=True)
class StoppedHard(Stopped):
    pass


def test_handlers_run_in_subscription_order_for_each_event_in_turn() -> None:
    hub, seen = EventHub(), []

    async def first(event: Started) -> None:
        await asyncio.sleep(0.01)  # a slow first handler still runs before the second
        seen.append(("first", event.name))

    async def second(event: Started) -> None:
        seen.append(("second", event.name))

    hub.subscribe(Started, first)
    hub.subscribe(Started, second)

    async def scenario() -> None:
        await hub.publish(Started("a"))
        await hub.publish(Started("b"))

    asyncio.run(scenario())
    assert seen == [("first", "a"), ("second", "a"), ("first", "b"), ("second", "b")]


def test_handlers_are_chosen_by_the_exact_type() -> None:
    hub, seen = EventHub(), []

    async def on_started(event: Started) -> None:
        seen.append(f"started {event.name}")

    async def on_stopped(event: Stopped) -> None:
        seen.append(f"stopped {event.name}")

    hub.subscribe(Started, on_started)
    hub.subscribe(Stopped, on_stopped)
    assert hub.wants(Started) and hub.wants(Stopped) and not hub.wants(StoppedHard)

    async def scenario() -> None:
        await hub.publish(Stopped("a"))
        await hub.publish(StoppedHard("b"))  # nobody subscribed to this one
        await hub.publish(Started("c"))
        await hub.publish(object())

    asyncio.run(scenario())
    assert seen == ["stopped a", "started c"]


def test_a_failing_handler_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub, seen = EventHub(), []

    async def broken(event: Started) -> None:
        raise RuntimeError(f"cannot take {event.name}")

    async def fine(event: Started) -> None:
        seen.append(event.name)

    hub.subscribe(Started, broken)
    hub.subscribe(Started, fine)
    with caplog.at_level(logging.ERROR, logger="tashi.runtime.hub"):
        asyncio.run(hub.publish(Started("a")))  # the publisher does not see the failure
    assert seen == ["a"]
    (record,) = caplog.records
    assert "Started" in record.getMessage() and "Started(name='a')" in record.getMessage()
    assert record.exc_info is not None and "cannot take a" in str(record.exc_info[1])


def test_cancellation_is_not_swallowed() -> None:
    hub = EventHub()

    async def cancelled(event: Started) -> None:
        raise asyncio.CancelledError

    hub.subscribe(Started, cancelled)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(hub.publish(Started("a")))
