"""The fault-injection suite, bounded (issue 14.6): a 3-host virtual cluster with real QEMU
guests and the default HA timings (6 s lease), a churn of VMs (create, createMany, migrate,
suspend, resume, destroy) while a piece of the cluster is SIGKILLed at a random moment and
started again; after each round every invariant of ``tashi.devcluster.faultrun`` must hold (one
place and state per instance, no VM twice, no VM stopped unasked outside a crashed host,
nothing leaked). Five rounds, one of each fault: the cluster manager, a node manager back
within its lease, the scheduler, a dnsmasq, and a node manager down past its lease (its host
"crashes": its VMs are fenced and restarted elsewhere). The seed is printed; ``FAULT_SEED``
replays one. The long run is ``python -m bench faults`` (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.devcluster.faultrun import FaultRun, Plan, keep_logs
from tashi.devcluster.faults import Kind
from tests.devcluster.harness import Running, running_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tashi-cluster needs root")

FABRIC = "198.18.128.0/20"  # no other test module's (the benchmark's is 198.18.144.0/20)
LEASE = 6.0
SCHEDULE = (
    (Kind.CM, False),
    (Kind.NM, False),
    (Kind.SCHEDULER, None),
    (Kind.DNSMASQ, None),
    (Kind.NM, True),
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path) -> Iterator[Running]:
    options: dict[str, object] = {
        "fabric": FABRIC,
        "image": tiny_image,
        "hostMemory": 1024,
        "networks": "1",
        "hostLeaseTime": LEASE,
    }
    with running_cluster(tmp_path_factory.mktemp("faults"), 3, options) as running:
        yield running


def test_churn_under_crashes_keeps_every_invariant(cluster: Running) -> None:
    seed = int(os.environ["FAULT_SEED"]) if os.environ.get("FAULT_SEED") else None
    plan = Plan(rounds=len(SCHEDULE), seed=seed, lease=LEASE, schedule=SCHEDULE)
    began = time.monotonic()
    report = FaultRun(cluster, plan).run()
    print(
        f"\nseed {report.seed}: {len(report.rounds)} rounds in {time.monotonic() - began:.0f} s,"
        f" faults {dict(report.faults)}, operations {dict(report.ops)},"
        f" refused {dict(report.refused)}"
    )
    assert {r.fault.kind for r in report.rounds} == set(Kind)
    assert report.faults["nm (host crashed)"] >= 1
    assert sum(report.ops.values()) >= 3 * len(SCHEDULE)
    if report.violations:
        logs = keep_logs(cluster.layout, cluster.root / "logs")
        pytest.fail(
            f"seed {report.seed} (FAULT_SEED={report.seed} replays it), logs in {logs}"
            " (cm/tashi-cm.log, hosts/host<N>/tashi-nm.log, hosts/host<N>/state/watchdog.log):\n"
            + "\n".join(report.violations)
        )
