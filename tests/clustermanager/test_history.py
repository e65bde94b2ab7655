"""History retention (``clustermanager/instances/history.py``) on the fake clock, over the in-memory
fake and SQLite as ``build_service`` wires it from ``[ClusterManager]``: a purge deletes the events
older than ``historyLifetime`` and each instance's beyond its newest ``historyPerInstance``, and
leaves the rest as they were. (The store methods' contract runs on every backend in
``tests/storage``; the supervised task of ``tashi-cm`` in ``tests/e2e/test_history_purge.py``.)"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from tashi.clustermanager.service import ClusterService, build_service
from tashi.domain.clock import FakeClock
from tashi.domain.ids import InstanceId
from tashi.storage.contract import Transaction
from tests.api.conftest import make_settings, make_store

HOUR = 3600.0


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def service_of(kind: str, tmp_path: Path, clock: FakeClock) -> ClusterService:
    settings = make_settings(tmp_path)
    kept = replace(settings.cluster_manager, history_lifetime=48 * HOUR, history_per_instance=20)
    settings = replace(settings, cluster_manager=kept)
    settings.cluster_manager.state_dir.mkdir(mode=0o700)
    return build_service(settings, make_store(kind, settings), clock=clock)


def record(service: ClusterService, clock: FakeClock, iid: int, count: int, tag: str) -> None:
    def add(tx: Transaction) -> None:
        for n in range(count):
            tx.events.add(InstanceId(iid), "state", f"{tag}{n}", now=clock.now())

    asyncio.run(service.db.write(add))


def messages(service: ClusterService, iid: int) -> list[str]:
    events = asyncio.run(service.db.read(lambda tx: tx.events.list(InstanceId(iid), limit=1000)))
    return [e.message for e in events]


def test_a_purge_drops_what_is_too_old_or_beyond_the_count(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    service = service_of(kind, tmp_path, clock)
    try:
        assert service.history.lifetime == timedelta(hours=48)
        assert service.history.per_instance == 20
        record(service, clock, 1, 3, "old")  # instance 1: three events, then nothing
        clock.advance(24 * HOUR)
        record(service, clock, 2, 25, "busy")  # instance 2: one burst of 25
        record(service, clock, 1, 1, "mid")
        clock.advance(24 * HOUR + 1)  # instance 1's first three are now older than 48 h
        record(service, clock, 3, 2, "new")
        assert asyncio.run(service.history.purge()) == 3 + 5
        assert messages(service, 1) == ["mid0"]
        assert messages(service, 2) == [f"busy{n}" for n in range(5, 25)]
        assert messages(service, 3) == ["new0", "new1"]
        assert asyncio.run(service.history.purge()) == 0  # nothing more to purge
        clock.advance(48 * HOUR)  # instance 3's are exactly 48 h old: kept, until older
        assert asyncio.run(service.history.purge()) == 1 + 20
        clock.advance(1)
        assert asyncio.run(service.history.purge()) == 2
        assert [messages(service, i) for i in (1, 2, 3)] == [[], [], []]
    finally:
        service.close()
