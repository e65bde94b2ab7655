"""A thread pool with two lanes: work queued in the urgent lane runs before any queued in the
normal one (``clustermanager.database``: the writes of node reports overtake users' writes
waiting for SQLite's one writer, so a busy cluster manager still renews leases in time).

Within a lane, work runs in the order it was queued. Work already running is never cut short.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

URGENT, NORMAL = 0, 1
_STOP = 2  # sorts after all work: a stop lets the queued work run first


class LanePool:
    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, urgent: bool, fn: Callable[..., T], *args: Any) -> Future[T]:
        done: Future[T] = Future()
        self._queue.put((URGENT if urgent else NORMAL, next(self._order), (done, fn, args)))
        return done

    def _work(self) -> None:
        while True:
            lane, _, job = self._queue.get()
            if lane == _STOP:
                return
            done, fn, args = job
            if not done.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits, as an executor does
                done.set_exception(exc)
            else:
                done.set_result(result)

    def shutdown(self) -> None:
        """Run what is queued, then stop the threads and wait for them."""
        for _ in self._threads:
            self._queue.put((_STOP, next(self._order), None))
        for thread in self._threads:
            thread.join()
