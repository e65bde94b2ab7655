"""The second part of ``python -m bench ec2``: ``DescribeInstances`` of a user's 1,000
instances, against the REST API's ``getInstances`` of the same 1,000 in the same run.

The lightest honest set-up: one ``tashi-cm`` on SQLite started by ``bench/cluster.py``'s
``start_cm`` (no host, no scheduler, so the instances made stay Pending), the EC2 API on a free
loopback port of its own (``[Ec2] port`` in ``etc/ClusterManager.cfg`` of the directory it runs
in: Tashi's config search reads ``./etc/`` before the file ``TASHI_CONFIG`` names, which sets no
``[Ec2]``), the admin's access key, and 1,000 instances made by ``createMany`` in batches of 250
(1 core, 128 MB, the store's image, one NIC on the default network). ``RunInstances`` cannot make
them: it launches only what the hosts have room for now, and there are none.

Each round times, one after the other: boto3's ``describe_instances()`` (all, unpaged), the
SDK's ``get_instances()``, then the filtered pair (``instance-state-name`` ``pending``, which all
1,000 match, against ``state=Pending``; ``running``, which none match, against
``state=Running``). A boto3 call is timed whole (signing, the HTTP exchange, botocore's parsing
of the XML into dicts) and its answer alone, from botocore's ``before-send`` to its
``before-parse`` events (the request sent, the whole body read); an SDK call whole (the HTTP
exchange, pydantic's decoding) and, in a plain ``httpx`` GET with the admin's token, its answer
alone. The first call of each (the warm-up, which checks what it answers) is kept apart: it
writes every instance (``instancecache``), where the rounds find most of them kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.cluster import BenchError, CmProcess, Database, start_cm
from bench.ec2client import Say, ec2_client
from tashi.api.schemas import CreateManyIn, DiskIn
from tashi.client.sdk import TashiClient
from tashi.runtime.ports import free_port

INSTANCES = 1000
BATCH = 250
CALLS, QUICK_CALLS = 30, 5
TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Pair:
    """A timed EC2 call and the REST call it is compared with (the same instances)."""

    key: str
    label: str
    baseline: str
    ec2: Callable[[Any], Any]
    rest: Callable[[TashiClient], Any]
    rest_params: dict[str, str]
    expect: int  # instances each answer must hold


PAIRS = (
    Pair(
        "all",
        "DescribeInstances 1,000",
        "getInstances 1,000",
        lambda ec2: ec2.describe_instances(),
        lambda sdk: sdk.get_instances(),
        {},
        INSTANCES,
    ),
    Pair(
        "pending",
        "DescribeInstances state pending (1,000 match)",
        "getInstances state=Pending",
        lambda ec2: ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending"]}]
        ),
        lambda sdk: sdk.get_instances(state="Pending"),
        {"state": "Pending"},
        INSTANCES,
    ),
    Pair(
        "running",
        "DescribeInstances state running (none match)",
        "getInstances state=Running",
        lambda ec2: ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["running"]}]
        ),
        lambda sdk: sdk.get_instances(state="Running"),
        {"state": "Running"},
        0,
    ),
)


@dataclass
class DescribeResults:
    """Seconds per call, by ``<pair>/<side>/<total|answer>``."""

    calls: int = 0
    fill_seconds: float = 0.0
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)


class AnswerClock:
    """Times a boto3 client's HTTP exchange: ``before-send`` to ``before-parse``."""

    def __init__(self, client: Any) -> None:
        self.sent = self.received = 0.0
        client.meta.events.register("before-send.ec2.*", self._send)
        client.meta.events.register("before-parse.ec2.*", self._parse)

    def _send(self, **_: Any) -> None:
        self.sent = time.perf_counter()  # returning None: botocore sends the request itself

    def _parse(self, **_: Any) -> None:
        self.received = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.received - self.sent


def start(directory: Path) -> tuple[CmProcess, int]:
    """A ``tashi-cm`` on SQLite with the EC2 API on a free port; (it, the EC2 port)."""
    port = free_port()
    etc = directory / "etc"
    etc.mkdir()
    (etc / "ClusterManager.cfg").write_text(f"[Ec2]\nport = {port}\n")
    sqlite = Database("sqlite", uri="", password="", url="")
    return start_cm(directory, sqlite, max_batch=BATCH), port


def run(directory: Path, quick: bool, say: Say, results: DescribeResults) -> None:
    """Fill ``results`` (a part of them if a call fails)."""
    results.calls = QUICK_CALLS if quick else CALLS
    cm, port = start(directory)
    try:
        with TashiClient(cm.base_url, token=cm.token, timeout=TIMEOUT) as admin:
            results.fill_seconds = _fill(admin)
            say(f"[ec2] {INSTANCES:,} instances made in {results.fill_seconds:.1f} s")
            key = admin.create_access_key()
            assert key.secretAccessKey is not None
            ec2 = ec2_client(f"http://127.0.0.1:{port}", key.accessKeyId, key.secretAccessKey)
            with httpx.Client(base_url=cm.base_url, headers=cm.headers, timeout=TIMEOUT) as http:
                _measure(ec2, admin, http, results, say)
    finally:
        cm.stop()


def _fill(admin: TashiClient) -> float:
    began = time.perf_counter()
    for batch in range(INSTANCES // BATCH):
        request = CreateManyIn(basename=f"d{batch}", count=BATCH, disks=[DiskIn(uri="bench.img")])
        admin.create_many(request)
    if len(admin.get_instances()) != INSTANCES:
        raise BenchError(f"wanted {INSTANCES} instances")
    return time.perf_counter() - began


def _measure(
    ec2: Any, admin: TashiClient, http: httpx.Client, results: DescribeResults, say: Say
) -> None:
    clock = AnswerClock(ec2)
    for pair in PAIRS:  # a warm-up of each, and a check of what it answers
        found = sum(len(r["Instances"]) for r in pair.ec2(ec2)["Reservations"])
        results.add(f"{pair.key}/ec2/first", clock.seconds)  # nothing written kept yet
        if found != pair.expect or len(pair.rest(admin)) != pair.expect:
            raise BenchError(f"{pair.label}: {found} instances, wanted {pair.expect}")
    for number in range(results.calls):
        for pair in PAIRS:
            began = time.perf_counter()
            pair.ec2(ec2)
            results.add(f"{pair.key}/ec2/total", time.perf_counter() - began)
            results.add(f"{pair.key}/ec2/answer", clock.seconds)
            began = time.perf_counter()
            pair.rest(admin)
            results.add(f"{pair.key}/rest/total", time.perf_counter() - began)
            began = time.perf_counter()
            answer = http.get("/v1/instances", params=pair.rest_params)
            answer.read()
            results.add(f"{pair.key}/rest/answer", time.perf_counter() - began)
            answer.raise_for_status()
        if (number + 1) % 10 == 0:
            say(f"[ec2] describe: {number + 1}/{results.calls} rounds")
