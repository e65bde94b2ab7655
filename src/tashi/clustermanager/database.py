"""Runs store transactions off the event loop.

The store is synchronous (SQLAlchemy Core); services are async. Each ``read``/``write`` runs one
function inside one transaction on a small thread pool, so a slow query never blocks the loop
and the whole unit of work commits or rolls back together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tashi.storage.contract import Store, Transaction

T = TypeVar("T")


class Database:
    def __init__(self, store: Store, *, workers: int = 8) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tashi-db")

    async def read(self, work: Callable[[Transaction], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, work)

    async def write(self, work: Callable[[Transaction], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._write, work)

    def _read(self, work: Callable[[Transaction], T]) -> T:
        with self.store.transaction(write=False) as tx:
            return work(tx)

    def _write(self, work: Callable[[Transaction], T]) -> T:
        with self.store.transaction(write=True) as tx:
            return work(tx)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.store.close()
