"""What a running virtual cluster is made of, kept in ``<stateDir>/cluster.json``.

Each ``tashi-cluster`` subcommand is a new process: it reads this file (under an exclusive lock,
``locked``) to find the cluster's tag, fabric, daemons and hosts, acts, and writes it back.
A process is recorded with its pid *and* its start time, so that ``stop`` never signals a pid
the kernel has meanwhile given to another program, and with how it was started
(``processes.Launch``), so that ``add`` starts a piece ``rm`` crashed again with the same
command, config and files. The layout of the directory is here too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tashi.devcluster.processes import Launch
from tashi.domain.errors import InvalidState

STATE_FILE = "cluster.json"


@dataclass
class Proc:
    """One process we started: pid and start time (``processes.start_time``), how to start it
    again (``None`` in a state file written before restarts existed), and whether
    ``tashi-cluster rm`` killed it (it stays recorded, down, until ``add`` starts it again)."""

    pid: int
    started: int | None
    launch: Launch | None = None
    crashed: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Proc:
        launch = data.get("launch")
        return cls(
            pid=int(data["pid"]),
            started=data.get("started"),
            launch=Launch(**launch) if launch else None,
            crashed=bool(data.get("crashed", False)),
        )


@dataclass
class State:
    tag: str
    fabric: str
    cm_port: int
    networks: list[int]
    cgroup: str
    # "tashi-cm", "tashi-scheduler", "dnsmasq.<network id>"
    daemons: dict[str, Proc] = field(default_factory=dict)
    hosts: dict[int, Proc] = field(default_factory=dict)  # host number -> its node manager
    files: list[str] = field(default_factory=list)  # made outside the state directory

    def to_json(self) -> str:
        data = asdict(self)
        data["hosts"] = {str(k): v for k, v in data["hosts"].items()}
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        return cls(
            tag=data["tag"],
            fabric=data["fabric"],
            cm_port=int(data["cm_port"]),
            networks=[int(n) for n in data["networks"]],
            cgroup=data["cgroup"],
            daemons={k: Proc.from_dict(v) for k, v in data["daemons"].items()},
            hosts={int(k): Proc.from_dict(v) for k, v in data["hosts"].items()},
            files=list(data.get("files", [])),
        )


@dataclass(frozen=True)
class Layout:
    """Where things live under the state directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def cm(self) -> Path:
        return self.root / "cm"

    @property
    def scheduler(self) -> Path:
        return self.root / "scheduler"

    @property
    def vfs(self) -> Path:
        return self.root / "vfs"

    @property
    def client_config(self) -> Path:
        return self.root / "client.cfg"

    @property
    def admin_credentials(self) -> Path:
        return self.cm / "state" / "admin-credentials.cfg"

    def host(self, number: int) -> Path:
        return self.root / "hosts" / host_name(number)

    def nm_state(self, number: int) -> Path:
        """The host's node manager's ``[NodeManagerService] stateDir``."""
        return self.host(number) / "state"

    def console(self, number: int, instance_id: int) -> Path:
        return self.nm_state(number) / "vms" / str(instance_id) / "console.log"

    def load(self) -> State:
        try:
            return State.from_json(self.state_file.read_text())
        except FileNotFoundError:
            raise InvalidState(
                f"no cluster is running from {self.root} (no {STATE_FILE}); start one with"
                " `tashi-cluster start`"
            ) from None

    def save(self, state: State) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, self.state_file)


def host_name(number: int) -> str:
    return f"host{number}"


def host_number(name: str) -> int | None:
    digits = name.removeprefix("host")
    return int(digits) if name.startswith("host") and digits.isdigit() else None


@contextlib.contextmanager
def locked(root: Path, timeout: float = 120.0) -> Iterator[None]:
    """Hold the state directory's lock: one subcommand at a time acts on a cluster. The lock
    file lives beside the directory (so removing the directory on stop is safe). Waiting for
    it has a deadline (another subcommand, e.g. a start waiting for its hosts, may hold it):
    ``InvalidState`` naming the holder's pid then, never a hang."""
    root.parent.mkdir(parents=True, exist_ok=True)
    lock = root.parent / f".{root.name}.lock"
    deadline = time.monotonic() + timeout
    with lock.open("a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "?"
                    raise InvalidState(
                        f"another tashi-cluster (pid {holder}) has been working on {root} for"
                        f" over {timeout:.0f} s: wait for it, or end it and run this again"
                    ) from None
                time.sleep(0.1)
        try:
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
