"""The two-lane thread pool: queued urgent work overtakes queued normal work, each lane keeps
its order, failures reach the waiter, and a stop runs what was queued first."""

from __future__ import annotations

import threading

import pytest

from tashi.runtime.lanes import LanePool


def test_urgent_work_overtakes_queued_normal_work_and_each_lane_keeps_its_order() -> None:
    pool = LanePool(1, "test")
    gate = threading.Event()
    ran: list[str] = []
    first = pool.submit(False, gate.wait)  # holds the only worker
    futures = [pool.submit(False, ran.append, f"n{i}") for i in range(3)]
    futures += [pool.submit(True, ran.append, f"u{i}") for i in range(2)]
    gate.set()
    for future in [first, *futures]:
        future.result(timeout=10)
    pool.shutdown()
    assert ran == ["u0", "u1", "n0", "n1", "n2"]


def test_a_failure_reaches_the_waiter_and_a_cancelled_job_never_runs() -> None:
    pool = LanePool(1, "test")
    gate = threading.Event()
    pool.submit(False, gate.wait)
    ran: list[int] = []
    cancelled = pool.submit(False, ran.append, 1)
    assert cancelled.cancel()
    failing = pool.submit(True, int, "not a number")
    gate.set()
    with pytest.raises(ValueError, match="invalid literal"):
        failing.result(timeout=10)
    queued = [pool.submit(False, ran.append, i) for i in (2, 3)]
    pool.shutdown()  # what is queued runs before the threads stop
    assert all(f.done() for f in queued) and ran == [2, 3]
