"""The database floors, measured in this process against the cluster manager's own database.

* ``insert_floor``: one single-row ``INSERT`` + ``COMMIT`` per transaction through SQLAlchemy
  Core, at the same concurrency as ``createVm`` (one thread and one pooled connection per
  worker), into a scratch table shaped like ``instances`` that is dropped afterwards. The engine
  is Tashi's own (``make_engine``: WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE`` on SQLite;
  READ COMMITTED on PostgreSQL), so the floor is what the store's settings allow.
* ``data_floor``: the rows a full ``getInstances`` returns (``instances`` and their ``nics``,
  two plain ``SELECT``\\s of every column through Tashi's own table definitions, so values decode
  as in the server), turned into dicts, NICs attached, and dumped as JSON: the least work that
  produces the same document. The dump is orjson's, as in the server: with the standard
  library's ``json.dumps`` (``default=str`` for the timestamps) this "floor" took 545 ms for
  10,000 PostgreSQL rows where Tashi took 250 ms, so it would measure the json module instead.

``runner.py`` runs them while the cluster manager is idle; the ratios are in ``report.py``.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from bench.load import percentile
from tashi.storage.sql.engine import make_engine
from tashi.storage.sql.tables import instances, nics

SCRATCH = "bench_insert_floor"


def _scratch_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        SCRATCH,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("cores", sa.Integer, nullable=False),
        sa.Column("memory", sa.Integer, nullable=False),
        sa.Column("disks", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def insert_floor(url: str, concurrency: int, requests: int, seconds: float) -> dict[str, float]:
    """Throughput and latency of single-row insert transactions at ``concurrency``."""
    engine = make_engine(url, pool_size=concurrency)
    table = _scratch_table(sa.MetaData())
    table.create(engine, checkfirst=True)
    try:
        latencies, wall = _run_inserts(engine, table, concurrency, requests, seconds)
    finally:
        table.drop(engine)
        engine.dispose()
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "throughput_per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
    }


def _run_inserts(
    engine: sa.Engine, table: sa.Table, concurrency: int, requests: int, seconds: float
) -> tuple[list[float], float]:
    """Latencies of every insert transaction, and the wall time of all of them."""
    numbers = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    disks = json.dumps([{"uri": "bench.img", "persistent": False}])
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(numbers, None)
            if i is None:
                return
            row = {
                "name": f"floor-{i}",
                "user_id": 1,
                "state": 1,
                "cores": 1,
                "memory": 128,
                "disks": disks,
                "created_at": datetime.now(UTC),
            }
            start = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(table.insert(), row)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return latencies, time.perf_counter() - start


def data_floor(url: str, size: int, repetitions: int) -> dict[str, float | int]:
    """Median and max seconds to SELECT every instance with its NICs and dump them as JSON."""
    engine = make_engine(url, pool_size=1)
    try:
        times: list[float] = []
        length = 0
        for _ in range(repetitions + 1):  # the first one warms the page cache, untimed
            start = time.perf_counter()
            document = _select_and_dump(engine, size)
            times.append(time.perf_counter() - start)
            length = len(document)
    finally:
        engine.dispose()
    timed = times[1:]
    return {
        "instances": size,
        "median_ms": statistics.median(timed) * 1e3,
        "max_ms": max(timed) * 1e3,
        "document_bytes": length,
    }


def _select_and_dump(engine: sa.Engine, size: int) -> bytes:
    with engine.connect() as conn:
        items = _dicts(conn.execute(sa.select(instances).order_by(instances.c.id)))
        nic_items = _dicts(conn.execute(sa.select(nics).order_by(nics.c.instance_id, nics.c.idx)))
    if len(items) != size:
        raise RuntimeError(f"data floor saw {len(items)} instances, expected {size}")
    by_instance: dict[int, list[dict[str, Any]]] = {}
    for nic in nic_items:
        by_instance.setdefault(nic["instance_id"], []).append(nic)
    for item in items:
        item["nics"] = by_instance.get(item["id"], [])
    return orjson.dumps(items)


def _dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    # Plain str keys: SQLAlchemy's are quoted_name, a str subclass orjson refuses as a key.
    keys = list(map(str, result.keys()))
    return [dict(zip(keys, row, strict=True)) for row in result]
