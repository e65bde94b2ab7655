"""A real ``tashi-cluster`` for tests and benchmarks: the command run as a user runs it (a
subprocess), with its own ``Cluster.cfg`` and state directory, an admin client, and ``stop``
whatever happens."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tashi.client.sdk import TashiClient
from tashi.devcluster import processes
from tashi.devcluster.fabric import Plan
from tashi.devcluster.faultrun import admin_client
from tashi.devcluster.state import Layout, State


@dataclass
class Running:
    root: Path
    env: dict[str, str]
    layout: Layout
    admin: TashiClient
    fabric: str

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tashi.devcluster.cli",
                "--state-dir",
                str(self.layout.root),
                *args,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def state(self) -> State:
        return self.layout.load()

    @property
    def plan(self) -> Plan:
        return Plan(self.state.tag, ipaddress.IPv4Network(self.fabric))


LEASE = 6.0  # hostLeaseTime of the outage and fault runs: tashi-cluster's own default


def ha_options(fabric: str, image: Path, **more: object) -> dict[str, object]:
    """``[Cluster]`` of the outage and fault-injection runs: ``fabric`` (one per module or
    benchmark), the guest ``image``, hosts of 1024 MB, one VM network, a ``LEASE`` s lease;
    ``more`` adds or overrides options."""
    return {
        "fabric": fabric,
        "image": image,
        "hostMemory": 1024,
        "networks": "1",
        "hostLeaseTime": LEASE,
        **more,
    }


@contextlib.contextmanager
def running_cluster(
    root: Path, hosts: int, cluster_options: dict[str, object]
) -> Iterator[Running]:
    """``tashi-cluster start <hosts>`` with ``[Cluster]`` = ``cluster_options`` (give each test
    module its own ``fabric``, so a developer's own cluster is left alone), stopped at the end
    whatever happened (a start that timed out too)."""
    config = processes.write_config(root / "Cluster.cfg", {"Cluster": cluster_options})
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
    env.update(TASHI_CONFIG=str(config), HOME=str(root))
    layout = Layout(root / "state")
    running = Running(root, env, layout, admin=None, fabric=str(cluster_options["fabric"]))  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        result = running.cli("start", str(hosts))
        assert result.returncode == 0, result.stdout + result.stderr
        print(f"tashi-cluster start {hosts}: {time.monotonic() - started:.1f} s")
        assert f"export TASHI_CONFIG={layout.client_config}" in result.stdout
        running.admin = admin_client(layout)
        try:
            yield running
        finally:
            running.admin.close()
    finally:
        running.cli("stop")  # returns at once when nothing was started
