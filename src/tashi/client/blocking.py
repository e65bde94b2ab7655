"""Running the async API client from synchronous code: one event loop on a background thread.

``TashiClient`` (``sdk.py``) is synchronous for the CLI, the devcluster, tests, benchmarks and
scripts, but the client underneath is ``tashi.apiclient.ApiClient`` (async). ``run`` hands a
coroutine to one event loop that runs on a daemon thread of its own, started at the first call
(again in a forked child), and waits for its result.

Why a thread and not a private loop in the caller's thread (``loop.run_until_complete``): the
callers include code that already runs an event loop (async tests and agents that use the
synchronous client for set-up, the devcluster's helpers), where a second loop cannot run in the
same thread; a loop on its own thread serves any caller, from any thread, at the cost of one
thread hop per request. One loop for the whole process rather than one per client: clients are
many and short-lived (a benchmark makes one per simulated user), and an idle loop costs nothing.
A caller interrupted while it waits (Ctrl-C in the CLI) cancels its request.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_owner: tuple[int, threading.Thread] | None = None  # the pid and thread the loop runs in


def run(work: Coroutine[Any, Any, T]) -> T:
    """``work``'s result (or exception), run on the client loop."""
    loop = _running_loop()
    if threading.current_thread() is _thread_of(loop):
        work.close()
        # Waiting here would stop the very loop that must run ``work``.
        raise RuntimeError("the synchronous client was called on its own loop: await ApiClient")
    future = asyncio.run_coroutine_threadsafe(work, loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop, _owner
    with _lock:
        if _loop is None or _owner is None or not _alive(*_owner):
            _loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_loop.run_forever, name="tashi-client-loop", daemon=True
            )
            thread.start()
            _owner = (os.getpid(), thread)
        return _loop


def _thread_of(loop: asyncio.AbstractEventLoop) -> threading.Thread | None:
    return _owner[1] if _owner is not None and loop is _loop else None


def _alive(pid: int, thread: threading.Thread) -> bool:
    return pid == os.getpid() and thread.is_alive()
