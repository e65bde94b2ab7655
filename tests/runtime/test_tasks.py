"""Supervised loops: a failing body is retried after a back-off that doubles from the loop's
interval up to a few seconds (never minutes), jittered by ±25 %; success resets it."""

from __future__ import annotations

import asyncio

import pytest

from tashi.runtime.tasks import MAX_BACKOFF, Supervisor, backoff


def test_the_back_off_doubles_and_is_capped_low() -> None:
    assert backoff(2.0, 0, MAX_BACKOFF, 0.0) == 2.0  # success: the interval, no jitter
    assert [backoff(0.5, f, 5.0, 0.5) for f in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff(0.5, 30, 5.0, 0.0) == 3.75 and backoff(0.5, 30, 5.0, 0.999) < 6.25
    assert backoff(3600.0, 3, 5.0, 0.5) == 3600.0  # a long interval is never shortened


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
