"""Real daemons as subprocesses: a ``tashi-cm`` and any number of ``tashi-nm``.

Each daemon gets its own config file (named by TASHI_CONFIG), HOME and working directory in a
temporary tree, a free loopback port, and a log file. ``stop()`` ends it by its pid (SIGTERM,
then SIGKILL after a deadline). Waiting is always for a condition, with a deadline.
"""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from tashi.api.schemas import UserIn
from tashi.client.sdk import TashiClient

BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def write_config(path: Path, sections: dict[str, dict[str, object]]) -> Path:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    for section, values in sections.items():
        parser[section] = {k: str(v) for k, v in values.items()}
    with path.open("w") as handle:
        parser.write(handle)
    return path


@dataclass
class Daemon:
    name: str
    argv: list[str]
    root: Path
    config: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
        env.update(HOME=str(self.root / "home"), TASHI_CONFIG=str(self.config))
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for(f"{self.name} to answer /health", self._healthy)

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL, no clean-up of its own (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Cluster:
    """One cluster manager plus node managers, all on this machine."""

    root: Path
    vfs: Path
    cm: Daemon
    admin: TashiClient
    nodes: dict[str, Daemon] = field(default_factory=dict)
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
    ) -> Daemon:
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
        node.start()
        self.nodes[name] = node
        wait_for(f"host {name} to be up", lambda: self.host_up(name))
        return node

    def host_up(self, name: str) -> bool:
        return any(h.name == name and h.up for h in self.admin.get_hosts())

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.cm.stop()
        self.admin.close()
