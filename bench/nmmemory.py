"""Node-manager memory: the resident set (``VmRSS``) of a ``tashi-nm`` with 0 and with N VMs,
in MB of 10^6 bytes.

A fresh node manager (``n3``, so nothing earlier in the run has touched it) is started and its
RSS read as soon as its host is up: the baseline, an idle ``tashi-nm`` right after start. After
two more heartbeats it is read again: 0 VMs. Then N small instances are made (``createVm``;
a ``createMany`` would be a group, placed all at once) and activated on it one by one through
the cluster manager, each once the guest
before it has printed its console marker (the RSS is read then); once two more heartbeats have
gone, the RSS is read with N VMs, next to each qemu's own RSS (what a VM costs the host in any
case). One at a time because on two cores, twenty guests booting at once under TCG starve each
other, and some kernels then panic in their IO-APIC timer check ("IO-APIC + timer doesn't
work!"; seen here with 2 of 20).
The VMs are then destroyed through the cluster manager, and the RSS read once more after two
heartbeats: what stays behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from bench.bareqemu import alive, wait_marker
from bench.cluster import BenchError
from bench.nodecluster import HEARTBEAT, NodeCluster, rss_mb, wait_for
from tashi.api.schemas import DiskIn, InstanceIn
from tashi.images.markers import UP

NODE = "n3"
BOOT_TIMEOUT = 120.0  # one guest, while the ones before it idle

Say = Callable[[str], None]


@dataclass(slots=True)
class MemoryResults:
    vms: int
    started_mb: float = 0.0  # right after start (host up)
    idle_mb: float = 0.0  # 0 VMs, a few heartbeats later
    per_start_mb: list[float] = field(default_factory=list)  # with k VMs, the k-th one up
    full_mb: float = 0.0  # N VMs, every guest up
    after_mb: float = 0.0  # the N destroyed
    qemu_mb: list[float] = field(default_factory=list)  # each VM's qemu, with N running
    activate_seconds: list[float] = field(default_factory=list)

    @property
    def per_vm_mb(self) -> float:
        """The node manager's growth per VM, from 0 VMs to N."""
        return (self.full_mb - self.idle_mb) / self.vms

    @property
    def marginal_mb(self) -> float:
        """Growth per VM after the first (the first also pays one-time costs)."""
        return (self.full_mb - self.per_start_mb[0]) / max(self.vms - 1, 1)

    @property
    def qemu_avg_mb(self) -> float:
        return sum(self.qemu_mb) / len(self.qemu_mb) if self.qemu_mb else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "per_vm_mb": self.per_vm_mb,
            "marginal_mb": self.marginal_mb,
            "qemu_avg_mb": self.qemu_avg_mb,
        }


def measure(cluster: NodeCluster, vms: int, memory: int, say: Say) -> MemoryResults:
    results = MemoryResults(vms)
    node = cluster.add_node(NODE)
    results.started_mb = node.rss_mb()
    _heartbeats(cluster, 2)
    results.idle_mb = node.rss_mb()
    say(
        f"[nodes] memory: tashi-nm pid {node.pid}: {results.started_mb:.1f} MB at start,"
        f" {results.idle_mb:.1f} MB idle; starting {vms} VMs of {memory} MB"
    )
    disks = [DiskIn(uri=cluster.image)]
    # One createVm each, not one createMany: a createMany is a group, placed all at once.
    made = [
        cluster.admin.create_vm(InstanceIn(name=f"mem-{n}", memory=memory, disks=disks, nics=[]))
        for n in range(vms)
    ]
    pids: dict[int, int] = {}
    for inst in made:
        t0 = time.monotonic()
        started = cluster.admin.activate_vm(inst.id, NODE)
        results.activate_seconds.append(time.monotonic() - t0)
        if started.state != "Running" or started.vmId is None:
            raise BenchError(f"activateVm of {inst.name} answered {started.state}")
        pids[inst.id] = started.vmId
        paths = cluster.vm_paths(NODE, inst.id)
        wait_marker(paths.console, UP, BOOT_TIMEOUT, partial(alive, started.vmId))
        results.per_start_mb.append(node.rss_mb())
    running = [i for i in cluster.admin.get_instances() if i.state == "Running" and i.id in pids]
    if len(running) != vms:
        raise BenchError(f"only {len(running)} of {vms} instances are Running")
    _heartbeats(cluster, 2)
    results.full_mb = node.rss_mb()
    results.qemu_mb = [rss_mb(pid) for pid in pids.values()]
    say(f"[nodes] memory: {results.full_mb:.1f} MB with {vms} VMs; destroying them")
    for iid in pids:
        cluster.destroy(iid)
    _heartbeats(cluster, 2)
    results.after_mb = node.rss_mb()
    return results


def _heartbeats(cluster: NodeCluster, count: int) -> None:
    """Wait until the cluster manager has recorded ``count`` more heartbeats of the node."""
    for _ in range(count):
        last = cluster.admin.get_host(NODE).lastHeartbeat
        beat = partial(_beat_since, cluster, last)
        wait_for(f"a heartbeat of {NODE}", beat, 10 * HEARTBEAT, every=0.1)


def _beat_since(cluster: NodeCluster, last: datetime | None) -> bool:
    return cluster.admin.get_host(NODE).lastHeartbeat != last
