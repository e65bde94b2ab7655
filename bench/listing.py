"""``getInstances`` with many stored instances: filling the store, timing the full listing.

``fill_to`` brings the number of stored instances up to a target with server-side
``createMany`` requests of ``maxBatch`` instances each (the count comes from ``/metrics``).
``time_listing`` does what the ``tashi getInstances`` CLI does: one ``GET /v1/instances`` of
everything, then the JSON decoded; each repetition is timed whole and split into the answer
(server + transfer) and the decode. ``runner.py`` calls both; ``floors.py`` has the data floor.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass

import httpx

from bench.cluster import IMAGE, BenchError, CmProcess
from bench.cpu import CpuMeter, CpuUse, spent
from tashi.api.schemas import CreateManyIn, DiskIn
from tashi.client.sdk import TashiClient
from tashi.domain.errors import TashiError

FILL_TIMEOUT = 600.0  # per createMany request; a batch of thousands is one transaction
_COUNT_LINE = re.compile(r'^tashi_instances\{state="[^"]+"\} (\d+)$', re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Listing:
    """Timings (seconds) of repeated full listings of ``size`` instances."""

    size: int
    totals: list[float]  # request sent -> JSON decoded
    answers: list[float]  # request sent -> whole body received
    decodes: list[float]  # JSON decode alone
    body_bytes: int
    cpu: CpuUse

    @property
    def median(self) -> float:
        return statistics.median(self.totals)

    @property
    def worst(self) -> float:
        return max(self.totals)

    def summary(self) -> dict[str, float | int | list[float]]:
        n = len(self.totals)
        return {
            "instances": self.size,
            "repetitions": n,
            "median_ms": self.median * 1e3,
            "max_ms": self.worst * 1e3,
            "all_ms": [t * 1e3 for t in self.totals],
            "answer_median_ms": statistics.median(self.answers) * 1e3,
            "decode_median_ms": statistics.median(self.decodes) * 1e3,
            "body_bytes": self.body_bytes,
            "client_cpu_ms_per_req": self.cpu.client / n * 1e3,
            "server_cpu_ms_per_req": self.cpu.server / n * 1e3,
            "db_cpu_ms_per_req": self.cpu.db / n * 1e3,
        }


def stored_instances(http: httpx.Client) -> int:
    """Instances in the store, by state, summed from ``/metrics``."""
    response = http.get("/metrics")
    response.raise_for_status()
    return sum(int(n) for n in _COUNT_LINE.findall(response.text))


def fill_to(cm: CmProcess, target: int, max_batch: int) -> float:
    """Create instances until ``target`` are stored; return the seconds it took."""
    start = time.perf_counter()
    admin = TashiClient(cm.base_url, token=cm.token, timeout=FILL_TIMEOUT)
    with admin, httpx.Client(base_url=cm.base_url, timeout=FILL_TIMEOUT) as http:
        have = stored_instances(http)
        batch = 0
        while have < target:
            count = min(max_batch, target - have)
            disks = [DiskIn(uri=IMAGE)]
            request = CreateManyIn(basename=f"fill{target}x{batch}", count=count, disks=disks)
            try:
                admin.create_many(request)
            except TashiError as exc:
                raise BenchError(f"createMany failed: {exc}") from exc
            have += count
            batch += 1
        if stored_instances(http) != target:
            raise BenchError(f"wanted {target} stored instances, /metrics says otherwise")
    return time.perf_counter() - start


def time_listing(cm: CmProcess, meter: CpuMeter, size: int, repetitions: int) -> Listing:
    """Time ``repetitions`` full listings (after one untimed one), checking each has ``size``."""
    totals: list[float] = []
    answers: list[float] = []
    decodes: list[float] = []
    body_bytes = 0
    with httpx.Client(base_url=cm.base_url, headers=cm.headers, timeout=120.0) as http:
        _list_once(http, size)  # connection set up, first-touch caches warmed, like a 2nd call
        before, start = meter.sample(), time.perf_counter()
        for _ in range(repetitions):
            total, answer, decode, body_bytes = _list_once(http, size)
            totals.append(total)
            answers.append(answer)
            decodes.append(decode)
        cpu = spent(before, meter.sample(), time.perf_counter() - start)
    return Listing(size, totals, answers, decodes, body_bytes, cpu)


def _list_once(http: httpx.Client, size: int) -> tuple[float, float, float, int]:
    # Plain httpx, not the API client: the table splits the answer's time from the decode's,
    # which the client does in one call. Only the status is looked at, no error body decoded.
    start = time.perf_counter()
    response = http.get("/v1/instances")
    answered = time.perf_counter()
    if response.status_code != 200:
        raise BenchError(f"getInstances failed ({response.status_code}): {response.text[:300]}")
    items = response.json()
    done = time.perf_counter()
    if len(items) != size:
        raise BenchError(f"getInstances returned {len(items)} instances, expected {size}")
    return done - start, answered - start, done - answered, len(response.content)
