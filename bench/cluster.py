"""The system under test: a temporary workspace, a real ``tashi-cm`` subprocess, its database.

``Workspace`` is one temporary directory per run (removed at the end). ``start_cm`` writes a
config file, starts ``tashi-cm`` on a free loopback port in its own session (so a Ctrl-C reaches
only the benchmark, which then stops it), waits for ``/health`` with a deadline, and logs in with
the admin credentials the first start wrote: a login only our server can answer, so a stranger
on the port is never mistaken for ours. ``CmProcess.stop`` ends it by pid; ``Workspace.remove``
also stops anything still running from the workspace (a database server whose start was cut
short). ``runner.py`` uses all of this; ``load.py`` and ``listing.py`` the address and token.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tashi.api.schemas import NetworkIn
from tashi.client.sdk import TashiClient
from tashi.devcluster.processes import stop_child, stop_pid
from tashi.domain.errors import TashiError
from tashi.runtime.ports import free_port

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
POLL_INTERVAL = 0.05  # between readiness checks of a starting server
IMAGE = "bench.img"
NETWORK = {"id": 1, "name": "bench"}


class BenchError(RuntimeError):
    """The benchmark could not set up or run a phase; the message says what and why."""


@dataclass(frozen=True, slots=True)
class Database:
    """Where the cluster manager keeps its state: Tashi's ``[SQL]`` options and a SQLAlchemy URL
    (password included) for the in-process floors of ``floors.py``."""

    kind: str  # "sqlite" or "postgres"
    uri: str  # [SQL] uri ("" = SQLite in stateDir)
    password: str  # [SQL] password
    url: str  # SQLAlchemy URL of the same database


class Workspace:
    """One temporary directory per run: config, state, image store, server logs."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tashi-bench-"))
        # PostgreSQL runs as the postgres user and must be able to enter its directory here.
        self.root.chmod(0o711)

    def subdir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(mode=0o711)
        return path

    def remove(self) -> None:
        """Stop any process still running from this directory, then delete it."""
        for pid in self.strays():
            stop_pid(pid, timeout=STOP_TIMEOUT)
        shutil.rmtree(self.root, ignore_errors=True)

    def strays(self) -> list[int]:
        """Processes whose command line names this directory: a server whose start was
        interrupted before anyone held its handle (the normal path stops each by its handle)."""
        marker = str(self.root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if marker in cmdline:
                found.append(int(entry.name))
        return found


@dataclass
class CmProcess:
    """A running ``tashi-cm`` and what the benchmark needs to talk to it."""

    process: subprocess.Popen[bytes]
    base_url: str
    state_dir: Path
    log: Path
    token: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.base_url.removeprefix("http://").partition(":")
        return host, int(port)

    @property
    def host(self) -> str:
        """The ``Host`` header of requests to it."""
        return self.base_url.removeprefix("http://")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        """SIGTERM by pid (uvicorn's graceful stop), then SIGKILL if it does not exit."""
        stop_child(self.process, STOP_TIMEOUT)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def start_cm(directory: Path, db: Database, *, max_batch: int) -> CmProcess:
    """Start ``tashi-cm`` with its state, image store and config under ``directory``; return it
    ready (healthy and logged in as admin), with network 1 and image ``bench.img`` in place."""
    images = directory / "vfs" / "images"
    images.mkdir(parents=True)
    (images / IMAGE).write_bytes(b"\0" * 65536)  # a raw image; createVm checks that it exists
    for _attempt in range(3):
        port = free_port()
        cm = _spawn(directory, db, port, max_batch)
        try:
            if _wait_ready(cm):
                _create_network(cm)
                return cm
        except BaseException:
            cm.stop()
            raise
        cm.stop()  # someone else held the port: try another
    raise BenchError(f"tashi-cm could not bind a free port; last log:\n{cm.log_tail()}")


def _spawn(directory: Path, db: Database, port: int, max_batch: int) -> CmProcess:
    state = directory / f"state-{port}"
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str  # type: ignore[assignment,method-assign]  # keep camelCase names
    config["ClusterManager"] = {"stateDir": str(state)}
    config["ClusterManagerService"] = {
        "host": "127.0.0.1",
        "port": str(port),
        "maxBatch": str(max_batch),
    }
    config["SQL"] = {"uri": db.uri, "password": db.password}
    config["Vfs"] = {"prefix": str(directory / "vfs")}
    config["Logging"] = {"level": "WARNING"}
    path = directory / f"cm-{port}.cfg"
    with path.open("w") as handle:
        config.write(handle)
    path.chmod(0o600)  # it holds the database password
    log = directory / f"cm-{port}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            _cm_command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=directory,
            env={**os.environ, "TASHI_CONFIG": str(path)},
            start_new_session=True,
        )
    return CmProcess(process, f"http://127.0.0.1:{port}", state, log)


def _cm_command() -> list[str]:
    script = Path(sys.executable).parent / "tashi-cm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tashi.daemons.cm"]


def _wait_ready(cm: CmProcess) -> bool:
    """Poll until our server answers a login; False if it exited because the port was taken."""
    credentials = cm.state_dir / "admin-credentials.cfg"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with TashiClient(cm.base_url, timeout=2.0) as anonymous:
        while time.monotonic() < deadline:
            if cm.process.poll() is not None:
                if "address already in use" in cm.log_tail():
                    return False
                raise BenchError(f"tashi-cm exited at start:\n{cm.log_tail()}")
            if credentials.exists() and _healthy(anonymous):
                cm.token = _login(cm, credentials)
                return True
            time.sleep(POLL_INTERVAL)
    raise BenchError(f"tashi-cm was not ready in {STARTUP_TIMEOUT:.0f} s:\n{cm.log_tail()}")


def _healthy(anonymous: TashiClient) -> bool:
    try:
        anonymous.health()  # any success, as a 200 was before
    except TashiError:
        return False
    return True


def _login(cm: CmProcess, credentials: Path) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(credentials)
    section = parser["AccessClusterManager"]
    who = {"username": section["username"], "password": section["password"]}
    try:
        with TashiClient(cm.base_url, timeout=2.0, **who) as admin:
            return admin.login().token
    except TashiError as exc:
        raise BenchError(f"admin login failed: {exc}") from exc


def _create_network(cm: CmProcess) -> None:
    try:
        with TashiClient(cm.base_url, token=cm.token, timeout=10.0) as admin:
            admin.add_network(NetworkIn(**NETWORK))
    except TashiError as exc:
        raise BenchError(f"creating network 1 failed: {exc}") from exc


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the benchmark runs, so cleanup happens either way."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
