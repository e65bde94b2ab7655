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
from tashi.runtime.ports import free_port

__all__ = ["BIN", "Cluster", "Daemon", "free_port", "wait_for", "write_config"]

T = TypeVar("T")


def Daemon(name: str, argv: list[str], root: Path, config: Path, port: int) -> processes.Daemon:  # noqa: N802
    """A daemon of the shared harness whose failures fail the test (``AssertionError``)."""
    return processes.Daemon(name, argv, root, config, port, error=AssertionError)


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    return processes.wait_for(what, probe, timeout, every, error=AssertionError)


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
    def start(cls, root: Path, vfs: Path, **cm_options: object) -> Cluster:
        port = free_port()
        state = root / "cm-state"
        config = write_config(
            root / "cm.cfg",
            {
                "ClusterManager": {"stateDir": state},
                "ClusterManagerService": {"host": "127.0.0.1", "port": port, **cm_options},
                "Vfs": {"prefix": vfs},
                "Logging": {"level": "INFO"},
            },
        )
        cm = Daemon("tashi-cm", [str(BIN / "tashi-cm")], root, config, port)
        cm.start()
        creds = configparser.ConfigParser(interpolation=None)
        creds.read(state / "admin-credentials.cfg")
        access = creds["AccessClusterManager"]
        admin = TashiClient(
            f"http://127.0.0.1:{port}", username=access["username"], password=access["password"]
        )
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
                "stateDir": self.root / name / "state",
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

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.cm.stop()
        self.admin.close()
