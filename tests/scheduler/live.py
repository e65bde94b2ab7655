"""A real tashi-cm with fake-driver node managers, an agent account, and tashi-scheduler."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tashi.api.schemas import NetworkIn, UserIn
from tashi.devcluster.processes import BIN, stop_child, write_config
from tashi.scheduler.cmclient import CmClient
from tests.e2e.harness import Cluster, wait_for

AGENT, AGENT_PASSWORD = "scheduler", "scheduler-secret-password"


@contextmanager
def cluster(root: Path, nodes: int = 2, **cm_options: object) -> Iterator[Cluster]:
    vfs = root / "vfs"
    (vfs / "images").mkdir(parents=True)
    (vfs / "images" / "disk.img").write_bytes(b"\0" * 4096)
    options: dict[str, object] = {"expireHostTime": 5.0, "maxBatch": 5000, **cm_options}
    c = Cluster.start(root, vfs, **options)
    try:
        c.admin.add_network(NetworkIn(id=1, name="default"))
        c.admin.register_user(UserIn(name=AGENT, password=AGENT_PASSWORD, role="agent"))
        add_nodes(c, nodes)
        yield c
    finally:
        c.stop()


def add_nodes(c: Cluster, count: int, frequency: float = 2.0) -> None:
    """``count`` fake node managers, started together (not one after the other)."""
    started = []
    for i in range(1, count + 1):
        node = c.spawn_node(f"n{i}", frequency=frequency, extra={"Logging": {"level": "WARNING"}})
        node.startup_timeout = 120.0
        started.append(node)
    for node in started:
        node.wait_healthy()
    names = {n.name for n in started}
    wait_for(
        f"{count} hosts to be up",
        lambda: names <= {h.name for h in c.admin.get_hosts() if h.up},
        timeout=120.0,
        every=0.2,
    )


def agent_client(c: Cluster) -> CmClient:
    return CmClient(
        f"http://127.0.0.1:{c.cm.port}", username=AGENT, password=AGENT_PASSWORD, timeout=60.0
    )


def scheduler_config(
    c: Cluster,
    name: str,
    sections: Mapping[str, Mapping[str, object]] | None = None,
    **scheduler: object,
) -> Path:
    """``<name>.cfg`` for a scheduler of this cluster: ``[Scheduler]`` options as keywords,
    other sections (a hook's) in ``sections``."""
    return write_config(
        c.root / f"{name}.cfg",
        {
            "Client": {"clusterManagerHost": "127.0.0.1", "clusterManagerPort": c.cm.port},
            "AccessClusterManager": {"username": AGENT, "password": AGENT_PASSWORD},
            "Scheduler": {"scheduleDelay": 0.5, **scheduler},
            "Logging": {"level": "INFO"},
            **(sections or {}),
        },
    )


@contextmanager
def scheduler(
    c: Cluster, name: str = "sched", **options: object
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``tashi-scheduler`` process, stopped by pid (SIGTERM) at the end."""
    config = scheduler_config(c, name, None, **options)
    with scheduler_process(c, config, c.root / f"{name}.log") as process:
        yield process


@contextmanager
def scheduler_process(c: Cluster, config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``tashi-scheduler`` with the configuration file ``config``, its output appended to
    ``log``; stopped by pid (SIGTERM) at the end if still running."""
    env = {"HOME": str(c.root / "home"), "TASHI_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(BIN / "tashi-scheduler")],
            cwd=c.root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield process
    finally:
        stop_child(process)
