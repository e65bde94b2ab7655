"""A real ``tashi-cm`` purges the instance history by itself: its supervised task runs once at
start and then hourly, and keeps ``[ClusterManager] historyLifetime`` (30 days) and
``historyPerInstance`` (100) by default. The events are written into its SQLite file while it
is stopped, as a cluster manager that ran for months would have left them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tashi.domain.ids import InstanceId
from tashi.storage.sql import SqlStore, make_engine
from tests.e2e.harness import Cluster, wait_for

BUSY, OLD, RECENT = InstanceId(7), InstanceId(8), InstanceId(9)  # ids no instance has


def test_the_cluster_manager_purges_old_and_surplus_history(tmp_path: Path) -> None:
    vfs = tmp_path / "vfs"
    (vfs / "images").mkdir(parents=True)
    c = Cluster.start(tmp_path, vfs)
    try:
        c.cm.stop()
        now = datetime.now(UTC)
        store = SqlStore(make_engine(f"sqlite:///{tmp_path / 'cm-state' / 'tashi.sqlite'}"))
        try:
            with store.transaction() as tx:
                for n in range(150):
                    tx.events.add(BUSY, "state", f"busy{n}", now=now)
                for n in range(3):
                    tx.events.add(OLD, "state", f"old{n}", now=now - timedelta(days=40))
                tx.events.add(RECENT, "state", "recent", now=now - timedelta(days=29))
        finally:
            store.close()
        c.cm.start()

        def history(iid: InstanceId) -> list[str]:
            return [e.message for e in c.admin.get_instance_history(iid, limit=1000)]

        wait_for("the purge", lambda: len(history(BUSY)) == 100, timeout=30)
        assert history(BUSY) == [f"busy{n}" for n in range(50, 150)]
        assert history(OLD) == []
        assert history(RECENT) == ["recent"]
        assert "history purged: 3 event(s) from before" in c.cm.log.read_text()
    finally:
        c.stop()
