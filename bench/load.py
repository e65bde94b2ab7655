"""A closed-loop HTTP load generator: N workers, each sending its next request when the last
one is answered, until a request budget or a time limit runs out.

It runs in the benchmark's own process (the cluster manager is another process) with one
keep-alive connection per worker (``wire.py``, a lean client). The same generator drives both
``createVm`` and the ``GET /health`` baseline, so the difference between the two is the server's
work, not the client's; ``cpu.py`` records how much CPU the client itself used. Bodies are
encoded once up front so the client does as little as it can. ``runner.py`` calls ``measure``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from bench import wire
from bench.cluster import IMAGE, BenchError, CmProcess
from bench.cpu import CpuMeter, CpuUse, spent

WARMUP_OFFSET = 1_000_000_000

#: (request head, body) of request number i
RequestMaker = Callable[[int], tuple[bytes, bytes | None]]


@dataclass(frozen=True, slots=True)
class Budget:
    requests: int  # measured requests
    seconds: float  # stop issuing new requests after this long
    warmup: int  # unmeasured requests first (connections, caches, JIT-less warm paths)


@dataclass(slots=True)
class LoadResult:
    """What one measured phase saw: latencies in seconds, sorted."""

    what: str
    concurrency: int
    latencies: list[float]
    errors: int
    cpu: CpuUse
    first_error: str = ""
    timed_out: bool = False
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.requests / self.cpu.wall if self.cpu.wall > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (``q`` in 0..100) of the latencies."""
        return percentile(self.latencies, q)

    def summary(self) -> dict[str, float | int | str | bool]:
        n = max(self.requests, 1)
        return {
            "what": self.what,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "timed_out": self.timed_out,
            "wall_s": self.cpu.wall,
            "throughput_per_s": self.throughput,
            "p50_ms": self.percentile(50) * 1e3,
            "p90_ms": self.percentile(90) * 1e3,
            "p99_ms": self.percentile(99) * 1e3,
            "max_ms": self.percentile(100) * 1e3,
            "mean_ms": sum(self.latencies) / n * 1e3,
            "client_cpu_ms_per_req": self.cpu.client / n * 1e3,
            "server_cpu_ms_per_req": self.cpu.server / n * 1e3,
            "db_cpu_ms_per_req": self.cpu.db / n * 1e3,
            "client_cpu_share": self.cpu.share(self.cpu.client),
            "server_cpu_share": self.cpu.share(self.cpu.server),
            "db_cpu_share": self.cpu.share(self.cpu.db),
        }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100), at least 1
    return sorted_values[int(rank) - 1]


def health(cm: CmProcess) -> RequestMaker:
    head = wire.request_head("GET", "/health", cm.host, {})
    return lambda _i: (head, None)


def create_vm(cm: CmProcess, prefix: str) -> RequestMaker:
    """``createVm`` of a 1-core, 128 MB instance named ``<prefix>-<i>`` (one NIC on network 1,
    MAC chosen by the server): the smallest request the CLI sends."""
    headers = {**cm.headers, "Content-Type": "application/json"}
    head = wire.request_head("POST", "/v1/instances", cm.host, headers)

    def make(i: int) -> tuple[bytes, bytes | None]:
        body = {"name": f"{prefix}-{i}", "disks": [{"uri": IMAGE}], "cores": 1, "memory": 128}
        return head, orjson.dumps(body)

    return make


def measure(
    cm: CmProcess,
    meter: CpuMeter,
    what: str,
    make: RequestMaker,
    concurrency: int,
    budget: Budget,
    expect: int,
) -> LoadResult:
    """Warm up, then run one measured phase of ``budget.requests`` requests."""
    return asyncio.run(_measure(cm, meter, what, make, concurrency, budget, expect))


async def _measure(
    cm: CmProcess,
    meter: CpuMeter,
    what: str,
    make: RequestMaker,
    concurrency: int,
    budget: Budget,
    expect: int,
) -> LoadResult:
    connections = [await wire.Connection.open(*cm.address) for _ in range(concurrency)]
    try:
        # Warm-up requests are numbered far above the measured ones, so names never collide.
        warm = _Run(connections, lambda i: make(WARMUP_OFFSET + i), expect)
        await warm.go(budget.warmup, budget.seconds)
        if warm.errors:
            raise BenchError(f"{what}: warm-up failed: {warm.first_error}")
        work = [make(i) for i in range(budget.requests)]  # built before the clock starts
        run = _Run(connections, work.__getitem__, expect)
        before, start = meter.sample(), time.perf_counter()
        timed_out = await run.go(budget.requests, budget.seconds)
        wall = time.perf_counter() - start
        cpu = spent(before, meter.sample(), wall)
    finally:
        for connection in connections:
            await connection.close()
    return LoadResult(
        what=what,
        concurrency=concurrency,
        latencies=sorted(run.latencies),
        errors=run.errors,
        cpu=cpu,
        first_error=run.first_error,
        timed_out=timed_out,
        statuses=run.statuses,
    )


class _Run:
    """The shared state of one phase's workers, one connection each."""

    def __init__(self, connections: list[wire.Connection], make: RequestMaker, expect: int) -> None:
        self.connections = connections
        self.make = make
        self.expect = expect
        self.numbers = itertools.count()
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""
        self.statuses: dict[int, int] = {}

    async def go(self, total: int, seconds: float) -> bool:
        """Run ``total`` requests; True if the time limit stopped it first."""
        self.total = total
        self.deadline = time.perf_counter() + seconds
        await asyncio.gather(*(self._worker(c) for c in self.connections))
        return len(self.latencies) + self.errors < total

    async def _worker(self, connection: wire.Connection) -> None:
        clock = time.perf_counter
        while clock() < self.deadline:
            i = next(self.numbers)
            if i >= self.total:
                return
            head, body = self.make(i)
            start = clock()
            status, answer = await connection.request(head, body)
            elapsed = clock() - start
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == self.expect:
                self.latencies.append(elapsed)
            else:
                self.errors += 1
                self.first_error = self.first_error or f"HTTP {status}: {answer[:300]!r}"
