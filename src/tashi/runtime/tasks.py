"""Supervised background loops.

A loop body that raises is logged with its name and retried after a back-off; it never dies
silently and never spins. ``Supervisor.stop()`` cancels every loop and waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def every(self, name: str, interval: float, body: Callable[[], Awaitable[object]]) -> None:
        """Run ``body`` now and then every ``interval`` seconds until stopped."""
        self._tasks.append(asyncio.create_task(self._loop(name, interval, body), name=name))

    async def _loop(
        self, name: str, interval: float, body: Callable[[], Awaitable[object]]
    ) -> None:
        failures = 0
        while True:
            try:
                await body()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # supervision boundary: log, back off, go on
                failures += 1
                log.exception("background task %s failed (%d in a row)", name, failures)
            delay = interval if failures == 0 else min(interval * 2**failures, 300.0)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


class Background:
    """One-shot background work (a suspend, a migration) that must not vanish silently:
    each task is kept until it ends, and a failure is logged with ``what``."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", self._what, exc_info=task.exception())

    async def wait(self) -> None:
        """Wait until every task has ended (tests, orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
