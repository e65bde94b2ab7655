"""The log keeper of a virtual cluster: ``python -m tashi.devcluster.logkeeper ROOT --limit N``.

``tashi-cluster`` writes its daemons' standard error into files of the cluster's state directory
(``cm/tashi-cm.log``, ``scheduler/tashi-scheduler.log``, ``hosts/hostN/tashi-nm.log``,
``dnsmasq-N.log``), and each dnsmasq of the DhcpDns hook logs every DHCP exchange into
``dnsmasq/dnsmasq.N.log`` (``--log-facility``, about 2 KB per VM created and destroyed). None of
those writers rotates its file and a cluster may run for days (``make demo`` leaves it running),
so this small process, started with the cluster manager, caps every ``*.log`` of the directory
at ``[Cluster] maxLogSize`` every 10 s (``runtime/logcap.py``: its newest bytes to ``<log>.1``, the
file emptied in place). The node managers' state directories (``hosts/hostN/state``: their
VMs' logs and their watchdogs') are theirs to cap, by ``[Logging] maxLogSize``, which the
cluster sets to the same size; the keeper leaves them out.

It runs in the cluster manager's namespace like the other pieces of the control plane, is
recorded in the state file as ``logkeeper`` (so ``status`` shows it and ``stop`` ends it by
pid), and ends on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from tashi.config.cluster import ClusterSettings
from tashi.devcluster import control
from tashi.devcluster.state import Layout, State
from tashi.runtime import logcap
from tashi.runtime.tasks import Supervisor

KEY = "logkeeper"
READY = "logkeeper: capping"
NODE_MANAGERS = "hosts/*/state"  # relative to the state directory: the node managers' own


def start(settings: ClusterSettings, layout: Layout, state: State) -> None:
    """Start the cluster's keeper, record it, and wait until it runs."""
    daemon = control.helper(settings, layout, state, KEY)
    daemon.argv = [sys.executable, "-m", __name__, str(layout.root)]
    daemon.argv += ["--limit", str(settings.max_log_size)]
    daemon.ready_log = READY
    state.daemons[KEY] = control.spawn(daemon)
    layout.save(state)
    daemon.wait_healthy()


async def keep(root: Path, limit: int, every: float) -> None:
    """Cap the logs under ``root`` every ``every`` seconds until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    caps = logcap.LogCap([root], limit, skip=lambda d: d.relative_to(root).match(NODE_MANAGERS))
    supervisor = Supervisor()
    supervisor.every("cap-logs", every, caps.check)
    print(f"{READY} the *.log files under {root} at {limit} bytes", file=sys.stderr, flush=True)
    await stop.wait()
    await supervisor.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tashi.devcluster.logkeeper")
    parser.add_argument("root", type=Path, help="the cluster's state directory")
    parser.add_argument("--limit", type=int, required=True, help="bytes a log may hold")
    parser.add_argument("--every", type=float, default=logcap.INTERVAL, help="seconds")
    args = parser.parse_args(argv)
    asyncio.run(keep(args.root, args.limit, args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
