"""Group commit of heartbeat renewals (ADR 0023).

A heartbeat that says nothing new (``book.HostBook``) still has to be written before it is
answered: the reply grants the node an HA lease, and the store must never hold an expiry
earlier than the one the node counts on (``ha.py``). Written one by one, each would take a
transaction of its own, and on SQLite's single writer 500 of them a second would queue behind
everything else. Instead each renewal is queued here and ``step`` (a supervised task of
``tashi-cm``) writes all that are queued in one transaction with ``HostRepository.renew``;
whoever comes while it writes goes into the next one. Each caller waits for the write that
holds its renewal, then learns whether its host is stored up (if not, its report must go the
whole way).

Without a running ``step`` (a service built for a test, a tool) each renewal is written on
its own, at once.
"""

from __future__ import annotations

import asyncio

from tashi.clustermanager.database import Database
from tashi.domain.errors import TashiError
from tashi.domain.ids import HostId
from tashi.domain.nodes import Renewal

_Queued = tuple[Renewal, "asyncio.Future[bool]"]


class Renewals:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: list[_Queued] = []
        self._ready: asyncio.Event | None = None  # set when the queue is not empty
        self._stepping = False
        self.batches = 0  # transactions written, and renewals in them (for the benchmark)
        self.renewed = 0

    async def renew(self, renewal: Renewal) -> bool:
        """Write the renewal (with others); whether its host is stored up."""
        if not self._stepping:
            return renewal.host_id not in await self._write([renewal])
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((renewal, done))
        self._event().set()
        return await done

    async def step(self) -> None:
        """Wait for renewals and write those queued in one transaction."""
        self._stepping = True
        try:
            await self._event().wait()
        except asyncio.CancelledError:  # the cluster manager stops: write at once from now
            self._stepping = False
            for _, done in self._queue:
                done.cancel()
            self._queue = []
            raise
        batch, self._queue = self._queue, []
        self._event().clear()
        try:
            down = await self._write([renewal for renewal, _ in batch])
        except TashiError as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        except asyncio.CancelledError:
            self._stepping = False
            for _, done in batch:
                done.cancel()
            raise
        for renewal, done in batch:
            if not done.done():
                done.set_result(renewal.host_id not in down)

    async def _write(self, batch: list[Renewal]) -> set[HostId]:
        down = await self._db.write(lambda tx: tx.hosts.renew(batch), urgent=True)
        self.batches += 1
        self.renewed += len(batch)
        return down

    def _event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready
