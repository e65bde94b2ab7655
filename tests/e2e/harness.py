"""Real daemons as subprocesses: a ``tashi-cm`` and any number of ``tashi-nm``.

Each daemon gets its own config file (named by TASHI_CONFIG), HOME and working directory in a
temporary tree, a free loopback port, and a log file. ``stop()`` ends it by its pid (SIGTERM,
then SIGKILL after a deadline). Waiting is always for a condition, with a deadline. The process
harness itself is ``tashi.devcluster.processes``, shared with the benchmarks and tashi-cluster.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tashi.api.schemas import UserIn
from tashi.client.sdk import TashiClient
from tashi.devcluster import processes
from tashi.devcluster.processes import BIN, write_config
from tashi.devcluster.strays import kill_watchdog
from tashi.runtime.ports import free_port
from tashi.storage.sql import SqlStore, make_engine

__all__ = [
    "BIN",
    "Cluster",
    "Daemon",
    "admin_login",
    "cm_daemon",
    "free_port",
    "wait_for",
    "write_config",
]

T = TypeVar("T")


def Daemon(name: str, argv: list[str], root: Path, config: Path, port: int) -> processes.Daemon:  # noqa: N802
    """A daemon of the shared harness whose failures fail the test (``AssertionError``)."""
    return processes.Daemon(name, argv, root, config, port, error=AssertionError)


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    return processes.wait_for(what, probe, timeout, every, error=AssertionError)


def cm_daemon(
    root: Path, name: str, vfs: Path, *, sql: dict[str, object] | None = None, **options: object
) -> processes.Daemon:
    """A ``tashi-cm`` (not started) with its state in ``root/cm-state``, its config in
    ``root/<name>.cfg``, a port of its own and ``[ClusterManagerService]`` ``options``."""
    port = free_port()
    sections: dict[str, dict[str, object]] = {
        "ClusterManager": {"stateDir": root / "cm-state"},
        "ClusterManagerService": {"host": "127.0.0.1", "port": port, **options},
        "Vfs": {"prefix": vfs},
        "Logging": {"level": "INFO"},
    }
    if sql is not None:
        sections["SQL"] = sql
    config = write_config(root / f"{name.removeprefix('tashi-')}.cfg", sections)
    return Daemon(name, [str(BIN / "tashi-cm")], root, config, port)


def admin_login(root: Path) -> dict[str, str]:
    """``username`` and ``password`` of the admin the first ``tashi-cm`` in ``root`` made."""
    creds = configparser.ConfigParser(interpolation=None)
    creds.read(root / "cm-state" / "admin-credentials.cfg")
    access = creds["AccessClusterManager"]
    return {"username": access["username"], "password": access["password"]}


@dataclass
class Cluster:
    """One cluster manager plus node managers, all on this machine."""

    root: Path
    vfs: Path
    cm: processes.Daemon
    admin: TashiClient
    nodes: dict[str, processes.Daemon] = field(default_factory=dict)
    node_password: str = "node-secret-password"

    @classmethod
    def start(
        cls, root: Path, vfs: Path, *, sql: dict[str, object] | None = None, **cm_options: object
    ) -> Cluster:
        """``sql``: the ``[SQL]`` section (default: SQLite in ``root/cm-state``)."""
        cm = cm_daemon(root, "tashi-cm", vfs, sql=sql, **cm_options)
        cm.start()
        admin = TashiClient(f"http://127.0.0.1:{cm.port}", **admin_login(root))
        admin.register_user(UserIn(name="node", password="node-secret-password", role="node"))
        return cls(root=root, vfs=vfs, cm=cm, admin=admin)

    def add_node(
        self,
        name: str,
        *,
        vmm: str = "fake",
        network: str = "fake",
        frequency: float = 0.5,
        extra: dict[str, dict[str, object]] | None = None,
    ) -> processes.Daemon:
        """Start a ``tashi-nm`` and wait until it is healthy and its host is up."""
        node = self.spawn_node(name, vmm=vmm, network=network, frequency=frequency, extra=extra)
        node.wait_healthy()
        wait_for(f"host {name} to be up", lambda: self.host_up(name))
        return node

    def spawn_node(
        self,
        name: str,
        *,
        vmm: str = "fake",
        network: str = "fake",
        frequency: float = 0.5,
        extra: dict[str, dict[str, object]] | None = None,
    ) -> processes.Daemon:
        """Start a ``tashi-nm`` without waiting for it (so many can start together)."""
        port = free_port()
        sections: dict[str, dict[str, object]] = {
            "NodeManagerService": {
                "host": "127.0.0.1",
                "port": port,
                "name": name,
                "advertise": f"http://127.0.0.1:{port}",
                "clusterManagerHost": "127.0.0.1",
                "clusterManagerPort": self.cm.port,
                "registerFrequency": frequency,
                "stateDir": self.state_dir(name),
            },
            "NodeManager": {
                "vmm": vmm,
                "network": network,
                "scratchDir": self.root / name / "scratch",
            },
            "AccessClusterManager": {"username": "node", "password": self.node_password},
            "Vfs": {"prefix": self.vfs},
            "Logging": {"level": "INFO"},
        }
        for section, values in (extra or {}).items():
            sections.setdefault(section, {}).update(values)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        config = write_config(self.root / name / "nm.cfg", sections)
        node = Daemon(name, [str(BIN / "tashi-nm")], self.root / name, config, port)
        node.spawn()
        self.nodes[name] = node
        return node

    def host_up(self, name: str) -> bool:
        return any(h.name == name and h.up for h in self.admin.get_hosts())

    def witnessed(self, name: str) -> bool:
        """Whether host ``name`` uses a witness set it acknowledged, with at least one witness
        (ADR 0010): only then can its VMs be restarted elsewhere when it is lost. Read from the
        cluster manager's SQLite file: the API does not show witness sets."""
        store = SqlStore(make_engine(f"sqlite:///{self.root / 'cm-state' / 'tashi.sqlite'}"))
        try:
            with store.transaction(write=False) as tx:
                link = tx.hosts.link(tx.hosts.get_by_name(name).id)
        finally:
            store.close()
        return link is not None and link.witnesses.settled() and not link.witnesses.lease_free()

    def wait_witnessed(self, *names: str) -> None:
        for name in names:
            wait_for(f"host {name} to have witnesses", lambda n=name: self.witnessed(n))  # type: ignore[misc]

    def state_dir(self, name: str) -> Path:
        return self.root / name / "state"

    def stop(self) -> None:
        for name, node in self.nodes.items():
            node.stop()
            kill_watchdog(self.state_dir(name))  # it outlives its node manager by design
        self.cm.stop()
        self.admin.close()
