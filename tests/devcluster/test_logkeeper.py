"""The virtual cluster's log keeper (``devcluster/logkeeper.py``) as ``tashi-cluster`` runs it, a
process of its own, over a state directory laid out as a cluster's: it caps the daemons' logs
and dnsmasq's, leaves the node managers' state directories to them, and ends on SIGTERM. No
root, no cluster: the files stand in for the daemons' (an appending writer holds one open)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tashi.devcluster import logkeeper, processes

CAP = 65536
BIG = b"".join(f"line {n}\n".encode() for n in range(10_000))  # 88,890 bytes


def test_the_keeper_caps_the_clusters_logs_but_the_node_managers(tmp_path: Path) -> None:
    cm_log = tmp_path / "cm" / "tashi-cm.log"
    dnsmasq_log = tmp_path / "dnsmasq" / "dnsmasq.1.log"
    console = tmp_path / "hosts" / "host1" / "state" / "vms" / "7" / "console.log"
    nm_log = tmp_path / "hosts" / "host1" / "tashi-nm.log"
    for path in (cm_log, dnsmasq_log, console, nm_log):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(BIG)
    writer = os.open(cm_log, os.O_WRONLY | os.O_APPEND)  # as the cluster manager's stderr
    argv = [sys.executable, "-m", "tashi.devcluster.logkeeper", str(tmp_path)]
    keeper = subprocess.Popen(
        [*argv, "--limit", str(CAP), "--every", "0.2"], stderr=subprocess.PIPE, text=True
    )
    try:
        assert keeper.stderr is not None
        assert keeper.stderr.readline().startswith(logkeeper.READY)
        capped = [cm_log, dnsmasq_log, nm_log]
        processes.wait_for("the logs capped", lambda: all(_capped(p) for p in capped), 10)
        assert all(_newest(_old(p).read_bytes()) for p in capped)
        os.write(writer, b"after\n")
        assert cm_log.read_bytes() == b"after\n"
        assert console.read_bytes() == BIG and not _old(console).exists()  # the node manager's
        keeper.send_signal(signal.SIGTERM)
        assert keeper.wait(timeout=10) == 0
    finally:
        os.close(writer)
        processes.stop_child(keeper)  # after a failure: by pid
        if keeper.stderr is not None:
            keeper.stderr.close()


def _old(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def _capped(path: Path) -> bool:
    return _old(path).exists() and path.stat().st_size == 0


def _newest(kept: bytes) -> bool:
    """Whether ``kept`` is BIG's newest lines, as many as the cap holds."""
    return BIG.endswith(kept) and BIG[-len(kept) - 1 :].startswith(b"\n") and len(kept) > CAP - 20
