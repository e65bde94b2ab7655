"""Real daemons as subprocesses: a ``tashi-cm`` and any number of ``tashi-nm``.

The cluster is the shared harness's ``tashi.devcluster.harness.Loopback`` (each daemon with its
own config file, HOME, directory, free loopback port and log; ``stop()`` ends it by its pid) run
in the tests' style: a failure or a deadline fails the test (``AssertionError``). Waiting is
always for a condition, with a deadline. What only a test may do lives here: reading the cluster
manager's database (``witnessed``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tashi.devcluster import harness, processes
from tashi.devcluster.harness import Loopback, Style, start_manager
from tashi.devcluster.processes import BIN, write_config
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
TEST = Style(error=AssertionError)
NODE_PASSWORD = "node-secret-password"


def Daemon(name: str, argv: list[str], root: Path, config: Path, port: int) -> processes.Daemon:  # noqa: N802
    """A daemon of the shared harness whose failures fail the test (``AssertionError``)."""
    return processes.Daemon(name, argv, root, config, port, error=AssertionError)


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    return processes.wait_for(what, probe, timeout, every, error=AssertionError)


def cm_daemon(
    root: Path, name: str, vfs: Path, *, sql: Mapping[str, object] | None = None, **options: object
) -> processes.Daemon:
    """``harness.cm_daemon`` in the tests' style."""
    return harness.cm_daemon(root, name, vfs, style=TEST, sql=sql, **options)


def admin_login(root: Path) -> dict[str, str]:
    """``username`` and ``password`` of the admin the first ``tashi-cm`` in ``root`` made."""
    return harness.admin_login(root, TEST)


@dataclass
class Cluster(Loopback):
    """One cluster manager plus node managers, all on this machine."""

    node_password: str = NODE_PASSWORD
    style: Style = TEST

    @classmethod
    def start(
        cls, root: Path, vfs: Path, *, sql: dict[str, object] | None = None, **cm_options: object
    ) -> Cluster:
        """``sql``: the ``[SQL]`` section (default: SQLite in ``root/cm-state``)."""
        cm, admin = start_manager(root, vfs, NODE_PASSWORD, style=TEST, sql=sql, options=cm_options)
        return cls(root=root, vfs=vfs, cm=cm, admin=admin)

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
