"""Supervised loops: a failing body is retried after a back-off that doubles from the loop's
interval up to a few seconds (never minutes), drawn between half and all of it; success resets
it. A loop capped at its own interval keeps its pace."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tashi.runtime.tasks import MAX_BACKOFF, Supervisor, backoff


def test_the_back_off_doubles_and_is_capped_low() -> None:
    assert backoff(2.0, 0, MAX_BACKOFF, 0.0) == 2.0  # success: the interval, no jitter
    assert [backoff(0.5, f, 5.0, 1.0) for f in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff(0.5, 30, 5.0, 0.0) == 2.5 and backoff(0.5, 30, 5.0, 0.999) < 5.0
    assert backoff(0.5, 30, MAX_BACKOFF, 0.999) < 2.0  # the default cap: seconds
    assert backoff(3600.0, 3, 5.0, 1.0) == 3600.0  # a long interval is never lengthened
    assert backoff(2.0, 9, 2.0, 0.999) < 2.0  # capped at its interval: within one interval


def test_a_failing_loop_is_retried_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def body() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("not yet")

    async def main() -> None:
        supervisor = Supervisor(max_backoff=0.02, draw=lambda: 0.0)
        supervisor.every("flaky", 0.01, body)
        while len(runs) < 5:
            await asyncio.sleep(0.005)
        await supervisor.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert "background task flaky failed (2 in a row)" in caplog.text


def test_a_loop_capped_at_its_interval_keeps_its_pace_while_failing() -> None:
    starts: list[float] = []

    async def body() -> None:
        starts.append(asyncio.get_running_loop().time())
        raise RuntimeError("the peer is away")

    async def main() -> None:
        supervisor = Supervisor(max_backoff=10.0, draw=lambda: 0.999)
        supervisor.every("heartbeat", 0.05, body, max_backoff=0.05)
        while len(starts) < 6:
            await asyncio.sleep(0.01)
        await supervisor.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max(gaps) < 0.5  # the supervisor's own cap (10 s) would have doubled them
