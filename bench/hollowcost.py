"""``python -m bench.hollowcost``: what the hollow hosts cost to offer their heartbeats.

The scale benchmark's cluster manager falls behind long before 5,000 hosts (issue 25), so
the load generator's own ceiling cannot be read there. Here the same ``hollow.Fleet`` as
``python -m bench scale`` runs, in this process, against ``hollowsink.py`` (the four node
endpoints of a cluster manager, answered at once with the real replies and an HA lease) in a
process of its own. Each host gets ``--vms`` VMs started by its real ``NodeService`` on the
fake driver (the call ``POST /v1/vms`` makes), so its heartbeats carry as many real reports.
After a heartbeat period for every host to have reported them, this process's CPU over
``--seconds`` is divided by the heartbeats offered: the generator's CPU per heartbeat, beside
the cores it used, the heartbeats offered and answered a second, its event loop's lag and the
VMs fenced (a late answer of the sink would show there).

    python -m bench.hollowcost --hosts 5000 --vms 15 --period 10 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.hollow import Fleet, Options
from bench.hollowproc import memory_dir
from tashi.devcluster.processes import stop_child
from tashi.domain.ids import InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.states import InstanceState
from tashi.runtime.ports import free_port

LIVENESS = 3.0  # the lease the sink grants, in heartbeat periods (as ``scale.LIVENESS``)
GROW_BATCH = 500  # hosts registered per ``grow`` (one node-app server each)
CLOSE_TIMEOUT = 120.0  # seconds the fleet may take to stop


def _instance(number: int) -> Instance:
    """A VM as the cluster manager sends it in ``POST /v1/vms`` after a ``createMany``."""
    return Instance(
        id=InstanceId(number),
        name=f"fill-{number}",
        user_id=UserId(2),
        state=InstanceState.Activating,
        cores=1,
        memory=64,
        disks=(DiskConfig(uri="bench.img"),),
        nics=(NicConfig(network=NetworkId(1), mac=f"52:54:00:{_mac(number)}"),),
        group_name=f"fill-{number // 100}",
    )


def _mac(number: int) -> str:
    return ":".join(f"{(number >> shift) & 0xFF:02x}" for shift in (16, 8, 0))


async def measure(hosts: int, vms: int, period: float, seconds: float, sink: str) -> dict[str, Any]:
    """Grow the fleet, start its VMs, and read one window of ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="tashi-hollowcost-", dir=memory_dir()) as root:
        per_host = vms + 1
        fleet = Fleet(
            Options(sink, "hollow", "hollow", Path(root), period, per_host * 64, per_host)
        )
        await fleet.start()
        try:
            started = time.monotonic()
            while len(fleet.hosts) < hosts:
                await fleet.grow(min(GROW_BATCH, hosts - len(fleet.hosts)))
            grown = time.monotonic() - started
            number = 0
            for host in fleet.hosts:
                for _ in range(vms):
                    number += 1
                    await host.node.start(_instance(number))
            fleet.settle()
            await asyncio.sleep(period * 1.5)  # every host has reported its VMs
            fleet.window()
            cpu, wall = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            stats = fleet.stats()
        finally:
            async with asyncio.timeout(CLOSE_TIMEOUT):  # then the process ends all the same
                await fleet.close()
    offered = stats["offered"]
    return {
        "hosts": hosts,
        "vms": stats["vms"],
        "grow_s": grown,
        "offered_per_s": offered / wall,
        "answered_per_s": stats["answered"] / wall,
        "cores": cpu / wall,
        "cpu_ms_per_heartbeat": cpu / offered * 1e3 if offered else None,
        "latency": stats["latency"],
        "loop_lag": stats["loop_lag"],
        "fenced": stats["fenced"],  # in the window
        "fenced_since_start": stats["fenced_total"],
        "errors": stats["errors"],
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hollowcost", description=__doc__)
    parser.add_argument("--hosts", type=int, default=5000, help="hollow hosts (5000)")
    parser.add_argument("--vms", type=int, default=15, help="VMs on each host (15)")
    parser.add_argument("--period", type=float, default=10.0, help="heartbeat period s (10)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window s (30)")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 3 sockets a host
    port = free_port()
    lease = f"{LIVENESS * args.period:g}"
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.hollowsink", str(port), lease],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != b"ready":
            print("the sink did not start", file=sys.stderr)
            return 1
        url = f"http://127.0.0.1:{port}"
        result = asyncio.run(measure(args.hosts, args.vms, args.period, args.seconds, url))
    finally:
        stop_child(sink)
    print(json.dumps(result, indent=1))
    print(
        f"{result['hosts']} hosts, {result['vms']} VMs: {result['offered_per_s']:.1f} heartbeats/s"
        f" offered, {result['answered_per_s']:.1f} answered; the generator used"
        f" {result['cores']:.3f} cores, {result['cpu_ms_per_heartbeat']:.3f} ms CPU a heartbeat;"
        f" loop lag p99 {result['loop_lag']['p99'] * 1e3:.0f} ms; VMs fenced {result['fenced']}"
        f" ({result['fenced_since_start']} since the start)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
