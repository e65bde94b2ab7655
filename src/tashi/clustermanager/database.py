"""Runs store transactions off the event loop.

The store is synchronous (SQLAlchemy Core); services are async. Each ``read``/``write`` runs one
function inside one transaction on a small thread pool, so a slow query never blocks the loop
and the whole unit of work commits or rolls back together. Writes have their own pool, sized by
``Store.max_writers`` (one for SQLite).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tashi.clustermanager.watch import ChangeFeed, Watched
from tashi.storage.contract import Store, Transaction

T = TypeVar("T")


class Database:
    def __init__(self, store: Store, *, workers: int = 8) -> None:
        self.store = store
        self.feed = ChangeFeed()  # bumped after each committed write that touched instances
        self._readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tashi-db-r")
        self._writers = ThreadPoolExecutor(
            max_workers=max(1, min(workers, store.max_writers)), thread_name_prefix="tashi-db-w"
        )

    async def read(self, work: Callable[[Transaction], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, work)

    async def write(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in a write transaction. Writes queue here, in order, when the store
        takes fewer concurrent writers than there are requests (``Store.max_writers``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writers, self._write, work, loop)

    def _read(self, work: Callable[[Transaction], T]) -> T:
        with self.store.transaction(write=False) as tx:
            return work(tx)

    def _write(self, work: Callable[[Transaction], T], loop: asyncio.AbstractEventLoop) -> T:
        with self.store.transaction(write=True) as tx:
            watched = Watched(tx)
            result = work(watched)  # a proxy of the Transaction
        # From the writer thread, after the commit: the feed's waiters see the new version
        # even if the request that wrote was cancelled meanwhile.
        if watched.changed:
            loop.call_soon_threadsafe(self.feed.bump)
        if watched.hosts_changed:
            loop.call_soon_threadsafe(self.feed.bump_hosts)
        return result

    def close(self) -> None:
        self._writers.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.store.close()
