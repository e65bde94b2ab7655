"""The clusters tests and benchmarks start, in two shapes, on the one process harness
(``processes``):

* ``running_cluster``: a real ``tashi-cluster`` (network namespaces, VXLAN, dnsmasq), the command
  run as a user runs it (a subprocess), with its own ``Cluster.cfg`` and state directory, an
  admin client, and ``stop`` whatever happens;
* ``Loopback``: a ``tashi-cm`` and any number of ``tashi-nm`` as plain processes on loopback
  ports, each with its own directory, config file and log under one root (the end-to-end tests'
  ``tests/e2e/harness.py`` and the node benchmarks' ``bench/nodecluster.py`` extend it).

``Style`` says what differs between a test and a benchmark: the error a failure raises, whether
each daemon runs in a session of its own, how long a start may take, and whether config files
are private.
"""

from __future__ import annotations

import configparser
import contextlib
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tashi.api.schemas import UserIn
from tashi.client.sdk import TashiClient
from tashi.devcluster import processes
from tashi.devcluster.fabric import Plan
from tashi.devcluster.faultrun import admin_client
from tashi.devcluster.processes import Daemon
from tashi.devcluster.state import Layout, State
from tashi.devcluster.strays import kill_watchdog
from tashi.runtime.ports import free_port

T = TypeVar("T")


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


# --- a cluster manager and node managers on loopback ------------------------------------------

NODE_USER = "node"  # the user the node managers log in as (role "node")


@dataclass(frozen=True)
class Style:
    """How a harness runs its daemons: ``error`` is what a failure or a deadline raises
    (``AssertionError`` in a test, a benchmark's own error); ``new_session`` starts each daemon
    in a session of its own (a Ctrl-C then reaches only the caller, which stops them in order);
    ``startup_timeout`` bounds a daemon's start and its host's coming up; ``private`` writes the
    config files 0600 (they hold passwords)."""

    error: Callable[[str], Exception] = processes.WaitTimeout
    new_session: bool = False
    startup_timeout: float = 30.0
    private: bool = False

    def daemon(self, name: str, program: str, root: Path, config: Path, port: int) -> Daemon:
        """The console script ``program`` as daemon ``name`` (not started)."""
        return Daemon(
            name,
            [processes.program(program)],
            root,
            config,
            port,
            new_session=self.new_session,
            startup_timeout=self.startup_timeout,
            error=self.error,
        )

    def write_config(self, path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
        return processes.write_config(path, sections, private=self.private)

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float | None = None) -> T:
        """``processes.wait_for`` with this style's error, ``startup_timeout`` by default."""
        limit = self.startup_timeout if timeout is None else timeout
        return processes.wait_for(what, probe, limit, error=self.error)


def cm_daemon(
    root: Path,
    name: str,
    vfs: Path,
    *,
    style: Style = Style(),
    sql: Mapping[str, object] | None = None,
    **options: object,
) -> Daemon:
    """A ``tashi-cm`` (not started) with its state in ``root/cm-state``, its config in
    ``root/<name without tashi->.cfg``, a port of its own, the image store under ``vfs``,
    ``[ClusterManagerService]`` ``options`` and ``[SQL]`` ``sql`` (default: SQLite in its
    state directory)."""
    port = free_port()
    sections: dict[str, Mapping[str, object]] = {
        "ClusterManager": {"stateDir": root / "cm-state"},
        "ClusterManagerService": {"host": "127.0.0.1", "port": port, **options},
        "Vfs": {"prefix": vfs},
        "Logging": {"level": "INFO"},
    }
    if sql is not None:
        sections["SQL"] = sql
    config = style.write_config(root / f"{name.removeprefix('tashi-')}.cfg", sections)
    return style.daemon(name, "tashi-cm", root, config, port)


def admin_login(root: Path, style: Style = Style()) -> dict[str, str]:
    """``username`` and ``password`` of the admin the first ``tashi-cm`` in ``root`` made
    (waiting, within ``style``'s start-up bound, for the file it writes them to)."""
    credentials = root / "cm-state" / "admin-credentials.cfg"
    style.wait_for("the admin credentials", credentials.exists)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(credentials)
    access = parser["AccessClusterManager"]
    return {"username": access["username"], "password": access["password"]}


def start_manager(
    root: Path,
    vfs: Path,
    node_password: str,
    *,
    style: Style = Style(),
    sql: Mapping[str, object] | None = None,
    options: Mapping[str, object] | None = None,
) -> tuple[Daemon, TashiClient]:
    """Start a ``tashi-cm`` (``cm_daemon``), log in as its admin and register the node
    managers' user with ``node_password``; the cluster manager is stopped again if a step
    fails."""
    cm = cm_daemon(root, "tashi-cm", vfs, style=style, sql=sql, **(options or {}))
    cm.start()
    try:
        login = admin_login(root, style)
        url = f"http://127.0.0.1:{cm.port}"
        admin = TashiClient(url, username=login["username"], password=login["password"])
        try:
            admin.register_user(UserIn(name=NODE_USER, password=node_password, role="node"))
        except BaseException:
            admin.close()
            raise
    except BaseException:
        cm.stop()
        raise
    return cm, admin


@dataclass
class Loopback:
    """One cluster manager and node managers, all on this machine, on loopback ports: each
    node manager in ``root/<name>`` (``nm.cfg``, ``state/``, ``scratch/``). Make one with
    ``start_manager``; ``stop`` stops every daemon by pid, and each node manager's watchdog."""

    root: Path
    vfs: Path
    cm: Daemon
    admin: TashiClient
    node_password: str
    style: Style = Style()
    nodes: dict[str, Daemon] = field(default_factory=dict)

    def add_node(
        self,
        name: str,
        *,
        vmm: str = "fake",
        network: str = "fake",
        frequency: float = 0.5,
        extra: Mapping[str, Mapping[str, object]] | None = None,
    ) -> Daemon:
        """Start a ``tashi-nm`` and wait until it is healthy and its host is up."""
        node = self.spawn_node(name, vmm=vmm, network=network, frequency=frequency, extra=extra)
        node.wait_healthy()
        self.style.wait_for(f"host {name} to be up", lambda: self.host_up(name))
        return node

    def spawn_node(
        self,
        name: str,
        *,
        vmm: str = "fake",
        network: str = "fake",
        frequency: float = 0.5,
        extra: Mapping[str, Mapping[str, object]] | None = None,
    ) -> Daemon:
        """Start a ``tashi-nm`` without waiting for it (so many can start together): driver
        ``vmm``, network driver ``network``, a heartbeat every ``frequency`` s; ``extra`` adds
        sections or options to its config."""
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
            "AccessClusterManager": {"username": NODE_USER, "password": self.node_password},
            "Vfs": {"prefix": self.vfs},
            "Logging": {"level": "INFO"},
        }
        for section, values in (extra or {}).items():
            sections.setdefault(section, {}).update(values)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        config = self.style.write_config(self.root / name / "nm.cfg", sections)
        node = self.style.daemon(name, "tashi-nm", self.root / name, config, port)
        self.nodes[name] = node
        node.spawn()
        return node

    def host_up(self, name: str) -> bool:
        return any(h.name == name and h.up for h in self.admin.get_hosts())

    def state_dir(self, name: str) -> Path:
        return self.root / name / "state"

    def tashi(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """The ``tashi`` command run by the admin (the credentials file the cluster manager
        wrote as its client config), in ``root``; its output captured, its status not checked."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
        credentials = self.root / "cm-state" / "admin-credentials.cfg"
        env.update(TASHI_CONFIG=str(credentials), HOME=str(self.root / "home"))
        return subprocess.run(
            [processes.program("tashi"), *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.root,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        """Stop the node managers (and their watchdogs, which outlive them by design), then
        the cluster manager, by pid; close the admin client."""
        for name, node in self.nodes.items():
            node.stop()
            kill_watchdog(self.state_dir(name))
        self.cm.stop()
        self.admin.close()
