"""Contract: ``HostRepository.lock`` serialises write units on one host (activateVm's claims).

A claim reads a host's placed instances and then places one more; two claims on one host must
not both read before either writes. The test below does exactly that read-then-write on a
counter kept in the host's notes, from several threads at once, with a pause between the read
and the write to widen the window: without the lock, PostgreSQL and MariaDB (READ COMMITTED)
lose updates; with it, every backend counts every one.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tashi.domain.errors import NotFound
from tashi.domain.ids import HostId
from tashi.storage.contract import Store
from tests.storage.test_contract_nodes import hosts

THREADS = 4
ROUNDS = 5


def test_lock_returns_the_host_and_refuses_an_unknown_one(store: Store) -> None:
    (host,) = hosts(store, "node1")
    with store.transaction() as tx:
        tx.hosts.update(host, notes="rack 4")
        locked = tx.hosts.lock(host)
        assert locked == tx.hosts.get(host) and locked.notes == "rack 4"
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.hosts.lock(HostId(999_999))


def test_read_then_write_units_that_lock_the_host_first_lose_no_update(store: Store) -> None:
    host, other = hosts(store, "node1", "node2")
    with store.transaction() as tx:
        tx.hosts.update(host, notes="0")
    start = threading.Barrier(THREADS)

    def bump() -> None:
        start.wait(timeout=30)
        for _ in range(ROUNDS):
            with store.transaction() as tx:
                seen = int(tx.hosts.lock(host).notes)
                time.sleep(0.01)  # widen the window between the read and the write
                tx.hosts.update(host, notes=str(seen + 1))

    with ThreadPoolExecutor(THREADS) as pool:
        for done in [pool.submit(bump) for _ in range(THREADS)]:
            done.result(timeout=120)
    with store.transaction(write=False) as tx:
        assert tx.hosts.get(host).notes == str(THREADS * ROUNDS)
        assert tx.hosts.get(other).notes == ""
