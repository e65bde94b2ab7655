"""The node suite (``python -m bench nodes``): Tashi on real QEMU against bare QEMU, same run.

One cluster (``nodecluster.py``): a ``tashi-cm`` and node managers ``n1`` and ``n2`` with the QEMU
driver under TCG, a private ``[Qemu] cgroupRoot``, the tiny guest in the image store. In order:
boot to the console marker against the same qemu command by hand (``boot.py``), live migration
``n1 <-> n2`` against a bare QMP migration (``migrate.py``), then a fresh ``n3``'s memory with 0
and N VMs (``nmmemory.py``). Before each timed measurement the suite waits (within a budget) for
the neighbours to go quiet (``neighbours.py``). Whatever happens — success, an error, Ctrl-C —
the cluster's ``stop()`` destroys the VMs and stops every process by pid, and removes its
cgroups; ``__main__.py`` then removes the workspace.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from bench.boot import BootBench
from bench.cluster import Workspace
from bench.migrate import MigrationBench
from bench.neighbours import Neighbours
from bench.nmmemory import measure
from bench.nodecluster import NodeCluster, tiny_image
from bench.nodereport import NodeResults

QUIET_THRESHOLD = 0.25  # cores used by other processes that count as a quiet machine

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class NodePlan:
    """How much to measure: ``FULL`` for docs/benchmarks.md, ``QUICK`` to smoke-test."""

    boots: int  # timed boots of each kind
    migrations: int  # timed migrations of each kind
    vms: int  # VMs of the memory phase
    memory_mb: int  # memory of the boot and migration VMs
    small_mb: int  # memory of the memory phase's VMs
    quiet_wait: float  # seconds one measurement may wait for quiet neighbours
    quiet_budget: float  # seconds all the waits of a run may take together


FULL = NodePlan(
    boots=15, migrations=10, vms=20, memory_mb=128, small_mb=96, quiet_wait=30, quiet_budget=180
)
QUICK = NodePlan(
    boots=2, migrations=2, vms=4, memory_mb=128, small_mb=96, quiet_wait=3, quiet_budget=20
)


class _Quiet:
    """Waits for quiet neighbours before a measurement, within the run's budget."""

    def __init__(self, neighbours: Neighbours, plan: NodePlan, results: NodeResults, say: Say):
        self.neighbours, self.plan, self.results, self.say = neighbours, plan, results, say
        self.left = plan.quiet_budget

    def __call__(self, what: str) -> None:
        started = time.monotonic()
        limit = max(1.0, min(self.plan.quiet_wait, self.left))
        load = self.neighbours.wait_quiet(limit, QUIET_THRESHOLD)
        self.left -= time.monotonic() - started
        if load >= QUIET_THRESHOLD:
            note = f"{what}: other processes used {load:.2f} cores; measured anyway"
            self.results.waits.append(note)
            self.say(f"[nodes] {note}")


def run(plan: NodePlan, workspace: Workspace, say: Say) -> NodeResults:
    results = NodeResults()
    image = tiny_image(say)
    neighbours = Neighbours(workspace.root)
    quiet = _Quiet(neighbours, plan, results, say)
    say("[nodes] starting tashi-cm and two tashi-nm (QEMU driver, TCG)")
    cluster = NodeCluster.start(workspace, image)
    try:
        for name in ("n1", "n2"):
            cluster.add_node(name)
        pids = ", ".join(f"{n.name} {n.pid}" for n in cluster.nodes.values())
        say(f"[nodes] tashi-cm pid {cluster.cm.pid}, tashi-nm pids {pids}")
        bare = workspace.subdir("bare")
        boot = BootBench(cluster, neighbours, bare, plan.memory_mb, quiet, say)
        migration = MigrationBench(cluster, neighbours, bare, plan.memory_mb, quiet, say)
        # The results objects fill as the phases go, so a phase that fails half-way still
        # shows what it measured (and the run says it failed).
        results.boot, results.migration = boot.results, migration.results

        def memory() -> None:
            results.memory = measure(cluster, plan.vms, plan.small_mb, say)

        phases: tuple[tuple[str, Callable[[], object]], ...] = (
            ("boot", lambda: boot.run(plan.boots)),
            ("migration", lambda: migration.run(plan.migrations)),
            ("memory", memory),
        )
        for name, phase in phases:
            _supervised(name, phase, results, say)
    finally:
        say("[nodes] stopping every VM and process")
        cluster.stop()
    return results


def _supervised(name: str, phase: Callable[[], object], results: NodeResults, say: Say) -> None:
    """Run one phase; a failure is reported and recorded, and the next phase still runs."""
    try:
        phase()
    # A supervision boundary: what failed is printed with its traceback and fails the run.
    except Exception:  # noqa: BLE001
        say(f"[nodes] {name} FAILED:\n{traceback.format_exc()}")
        results.failed.append(name)
