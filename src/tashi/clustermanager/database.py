"""Runs store transactions off the event loop.

The store is synchronous (SQLAlchemy Core); services are async. Each ``read``/``write`` runs one
function inside one transaction on a small thread pool, so a slow query never blocks the loop
and the whole unit of work commits or rolls back together. Writes have their own pool, sized by
``Store.max_writers`` (one for SQLite), with an urgent lane for node reports
(``runtime.lanes``).

After the commit of a write, the events it recorded (``watch.Watched``: instance state changes,
hosts going up or down) are published on the event hub, in order, before ``write`` returns;
they are published even if the caller was cancelled meanwhile, as the change feed is bumped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from tashi.clustermanager.watch import ChangeFeed, Watched
from tashi.runtime.hub import EventHub
from tashi.runtime.lanes import LanePool
from tashi.storage.contract import Store, Transaction

T = TypeVar("T")


class Database:
    def __init__(self, store: Store, *, workers: int = 8, hub: EventHub | None = None) -> None:
        self.store = store
        self.feed = ChangeFeed()  # bumped after each committed write that touched instances
        self.hub = hub or EventHub()  # told what each committed write recorded
        self._publishing: set[Future[None]] = set()
        self._readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tashi-db-r")
        self._writers = LanePool(max(1, min(workers, store.max_writers)), "tashi-db-w")

    async def read(self, work: Callable[[Transaction], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, work)

    async def write(
        self,
        work: Callable[[Transaction], T],
        *,
        reporting: int | None = None,
        urgent: bool = False,
    ) -> T:
        """Run ``work`` in a write transaction. Writes queue here, in order, when the store
        takes fewer concurrent writers than there are requests (``Store.max_writers``);
        ``urgent`` ones (node reports: they renew leases) before the others.

        ``reporting``: the host whose own report this write records (``ChangeFeed.touch``);
        such a write is urgent."""
        loop = asyncio.get_running_loop()
        urgent = urgent or reporting is not None
        written: tuple[T, Future[None] | None] = await asyncio.wrap_future(
            self._writers.submit(urgent, self._write, work, loop, reporting)
        )
        result, published = written
        if published is not None:  # shielded: a cancelled caller does not cancel the handlers
            await asyncio.shield(asyncio.wrap_future(published))
        return result

    def _read(self, work: Callable[[Transaction], T]) -> T:
        with self.store.transaction(write=False) as tx:
            return work(tx)

    def _write(
        self,
        work: Callable[[Transaction], T],
        loop: asyncio.AbstractEventLoop,
        reporting: int | None,
    ) -> tuple[T, Future[None] | None]:
        with self.store.transaction(write=True) as tx:
            watched = Watched(tx, self.hub.wants)
            result = work(watched)  # a proxy of the Transaction
        # From the writer thread, after the commit: the feed's waiters see the new version,
        # and the hub's handlers the events, even if the request that wrote was cancelled
        # meanwhile.
        if watched.changed:
            loop.call_soon_threadsafe(self.feed.bump)
        if watched.hosts_changed:
            loop.call_soon_threadsafe(self.feed.bump_hosts)
        if watched.touched_hosts or watched.touched_instances:
            hosts, instances = watched.touched_hosts, watched.touched_instances
            loop.call_soon_threadsafe(self.feed.touch, hosts, instances, reporting)
        if not watched.recorded:
            return result, None
        published = asyncio.run_coroutine_threadsafe(self._publish(watched.recorded), loop)
        self._publishing.add(published)  # kept until done: no task is lost to the collector
        published.add_done_callback(self._publishing.discard)
        return result, published

    async def _publish(self, events: Sequence[object]) -> None:
        for event in events:
            await self.hub.publish(event)

    def close(self) -> None:
        self._writers.shutdown()
        self._readers.shutdown(wait=True)
        self.store.close()
