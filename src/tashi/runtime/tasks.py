"""Supervised background loops.

A loop body that raises is logged with its name and retried after a back-off; it never dies
silently and never spins. The back-off doubles from the loop's interval up to ``max_backoff``
(2 s by default, or the loop's own cap: a peer that was away is found again within seconds of
its return, not minutes), each delay drawn between half and all of it so that many clients of
one server do not retry in step and none waits longer than the cap. A loop whose cap is its
interval (the node manager's heartbeat) keeps its pace through an outage and reaches a returned
peer within one interval. ``Supervisor.stop()`` cancels every loop and waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine

log = logging.getLogger(__name__)


MAX_BACKOFF = 2.0


def backoff(interval: float, failures: int, cap: float, draw: float) -> float:
    """Seconds before the next run after ``failures`` failures in a row (``draw`` in [0, 1))."""
    if failures == 0:
        return interval
    capped: float = min(interval * 2.0**failures, max(interval, cap))
    return capped * (0.5 + draw / 2)


class Supervisor:
    def __init__(
        self, max_backoff: float = MAX_BACKOFF, draw: Callable[[], float] = random.random
    ) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._max_backoff = max_backoff
        self._draw = draw

    def every(
        self,
        name: str,
        interval: float,
        body: Callable[[], Awaitable[object]],
        max_backoff: float | None = None,
    ) -> None:
        """Run ``body`` now and then every ``interval`` seconds until stopped; after a failure,
        within ``max_backoff`` (the supervisor's own cap unless given)."""
        cap = self._max_backoff if max_backoff is None else max_backoff
        self._tasks.append(asyncio.create_task(self._loop(name, interval, body, cap), name=name))

    async def _loop(
        self, name: str, interval: float, body: Callable[[], Awaitable[object]], cap: float
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
            await asyncio.sleep(backoff(interval, failures, cap, self._draw()))

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
