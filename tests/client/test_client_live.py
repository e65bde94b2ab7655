"""The real ``tashi`` console script against a real ``tashi-cm``, both as subprocesses.

One cluster manager per module: a temporary stateDir and image store named by a TASHI_CONFIG
file, a free port on 127.0.0.1. The admin's credentials come from the file the cluster manager
writes at its first start, as an administrator would use them. Every ``tashi`` run has HOME and
the working directory in temporary directories and no inherited TASHI_* variable, so the
developer's own ``~/.tashi`` or ``./etc`` cannot leak in. The server is stopped by its pid.

Verbs that need a node manager (pause, suspend, migrate, …) are driven to the refusal this
cluster manager gives for an instance that is not running; the node-manager issue extends this.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tashi.runtime.ports import free_port

BIN = Path(sys.executable).parent
QCOW2_HEADER = b"QFI\xfb" + b"\x00\x00\x00\x03" + b"\x00" * 16 + (64 * 2**20).to_bytes(8, "big")
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Ran:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def rows(self) -> list[list[str]]:
        """The table's data rows, split on whitespace (header and dashes dropped)."""
        return [line.split() for line in self.out.splitlines()[2:]]


@dataclass(frozen=True)
class Cluster:
    port: int
    admin_config: Path
    root: Path

    def tashi(
        self,
        *argv: str,
        config: Path | None = None,
        as_admin: bool = True,
        env: dict[str, str] | None = None,
        home: Path | None = None,
        script: str = "tashi",
    ) -> Ran:
        """Run the console script with ``config`` as TASHI_CONFIG, by default the admin's file
        (``as_admin=False``: none, so only HOME and ``env`` give credentials)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
        base["HOME"] = str(home or self.root / "home")
        chosen = config if config is not None else self.admin_config if as_admin else None
        if chosen is not None:
            base["TASHI_CONFIG"] = str(chosen)
        base.update(env or {})
        done = subprocess.run(
            [str(BIN / script), *argv],
            capture_output=True,
            text=True,
            env=base,
            cwd=self.root / "work",
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        ran = Ran(done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in ran.err, ran.err
        if ran.status != 0:
            assert ran.err.startswith(f"{script}: error: "), ran.err
        return ran

    def ok(self, *argv: str, **kw: Any) -> Ran:
        ran = self.tashi(*argv, **kw)
        assert ran.status == 0, ran.err
        return ran

    def user_config(self, name: str, password: str) -> Path:
        path = self.root / f"{name}.cfg"
        path.write_text(
            f"[Client]\nclusterManagerHost = 127.0.0.1\nclusterManagerPort = {self.port}\n"
            f"[AccessClusterManager]\nusername = {name}\npassword = {password}\n"
        )
        return path


def _layout(root: Path, port: int) -> Path:
    for name in ("home", "work", "vfs/images"):
        (root / name).mkdir(parents=True)
    (root / "vfs/images/base.qcow2").write_bytes(QCOW2_HEADER + b"\0" * 1_800_000)
    (root / "vfs/images/other.img").write_bytes(b"\0" * 4096)
    config = root / "cm.cfg"
    config.write_text(
        f"[ClusterManager]\nstateDir = {root / 'state'}\n"
        f"[ClusterManagerService]\nhost = 127.0.0.1\nport = {port}\n"
        f"[Vfs]\nprefix = {root / 'vfs'}\n"
        "[Logging]\nlevel = WARNING\n"
    )
    return config


def _wait_until_up(proc: subprocess.Popen[bytes], port: int, credentials: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tashi-cm exited with status {proc.returncode} at start")
        try:
            up = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            up = False
        if up and credentials.is_file():
            return
        time.sleep(0.1)
    raise RuntimeError(f"tashi-cm did not answer on port {port} within {START_TIMEOUT} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for script in ("tashi", "tashi-admin", "tashi-cm"):
        assert (BIN / script).is_file(), f"{BIN / script} is missing: pip install -e ."
    root = tmp_path_factory.mktemp("live")
    port = free_port()
    config = _layout(root, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
    env.update(HOME=str(root / "home"), TASHI_CONFIG=str(config))
    log = (root / "cm.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "tashi-cm")], env=env, cwd=root / "work", stdout=log, stderr=log
    )
    try:
        credentials = root / "state" / "admin-credentials.cfg"
        _wait_until_up(proc, port, credentials)
        # The file names clusterManagerHost = 127.0.0.1 and our port: use it as is.
        made = Cluster(port=port, admin_config=credentials, root=root)
        made.ok("addNetwork", "--id", "1", "--name", "default")
        made.ok("registerUser", "--name", "alice", "--passwd", "alice-pass-1", "--priority", "3")
        yield made
    finally:
        _stop(proc)
        log.close()


# --- identity, networks, images, users ------------------------------------------------------


def test_admin_credentials_file_works_as_client_config(cluster: Cluster) -> None:
    ran = cluster.ok("whoami")
    assert ran.rows() == [["1", "admin", "admin", "0"]]
    assert cluster.ok("WHOAMI", "--json").json()["role"] == "admin"
    assert cluster.ok("getHosts", script="tashi-admin").out.startswith("id")


def test_networks(cluster: Cluster) -> None:
    assert cluster.ok("addNetwork", "--id", "7", "--name", "lab").out == (
        "Network lab added with id 7.\n"
    )
    assert ["7", "lab", "False"] in cluster.ok("getNetworks").rows()
    assert ["1", "default", "True"] in cluster.ok("getnetworks").rows()
    dup = cluster.tashi("addNetwork", "--id", "7", "--name", "lab2")
    assert dup.status == 4
    assert cluster.ok("delNetwork", "--network", "lab").out == "Network lab (id 7) removed.\n"
    assert all(row[1] != "lab" for row in cluster.ok("getNetworks").rows())
    assert cluster.tashi("delNetwork", "--network", "lab").status == 3


def test_images(cluster: Cluster) -> None:
    rows = cluster.ok("getImages", "--show-format").rows()
    names = {row[1]: row for row in rows}
    assert names["base.qcow2"][2] == "1.72M"
    assert names["base.qcow2"][3] == "qcow2"
    images = cluster.ok("getImages", "--json").json()
    assert {i["imageName"] for i in images} == {"base.qcow2", "other.img"}


def test_users(cluster: Cluster) -> None:
    rows = cluster.ok("getUsers").rows()
    assert ["2", "alice", "user", "3"] in rows
    assert cluster.tashi("registerUser", "--name", "alice", "--passwd", "x-pass-123").status == 4
    no_tty = cluster.tashi("registerUser", "--name", "carol")
    assert no_tty.status == 2
    assert "stdin is not a terminal" in no_tty.err
    made = cluster.ok(
        "registerUser", "--name", "dave", "--passwd", "dave-pass-1", "--role", "ADMIN"
    )
    assert made.out.startswith("User dave registered with id ")
    assert cluster.ok("getUsers").rows()[-1][1:3] == ["dave", "admin"]
    gone = cluster.ok("unregisterUser", "--userId", "dave")
    assert gone.out.startswith("User dave (id ")
    assert cluster.tashi("unregisterUser", "--user", "dave").status == 3


# --- hosts ---------------------------------------------------------------------------------


def test_host_administration(cluster: Cluster) -> None:
    assert cluster.ok("addHost", "--host", "node1").out == "Registered host node1 with hostId 1.\n"
    cluster.ok("registerHost", "--host", "node2")
    rows = cluster.ok("getHosts").rows()
    assert rows[0][:4] == ["1", "node1", "False", "Normal"]
    assert cluster.ok("setHostState", "--host", "node1", "--state", "drained").out == (
        "Host state set to Drained.\n"
    )
    assert cluster.tashi("setHostState", "--host", "node1", "--state", "sleepy").status == 2
    cluster.ok("setHostNotes", "--host", "1", "--notes", "disk-2-failing")
    cluster.ok("setHostConfig", "--host", "node1", "--config", "location=EU,auditability=True")
    done = cluster.ok("setHostConfig", "--hostId", "1", "--elemName", "auditability", "--value", "")
    assert done.out == "Host config of node1: location=EU\n"
    host = next(h for h in cluster.ok("getHosts", "--json").json() if h["name"] == "node1")
    assert (host["state"], host["notes"], host["config"]) == (
        "Drained",
        "disk-2-failing",
        {"location": "EU"},
    )
    shown = cluster.ok("getHosts", "--hide-all", "--show-name", "--show-config").rows()
    assert shown == [["node1", "location=EU"], ["node2", "-"]]
    assert cluster.tashi("setHostState", "--host", "nowhere", "--state", "normal").status == 3


def test_reservations(cluster: Cluster) -> None:
    cluster.ok("addHost", "--host", "node3")
    assert cluster.ok("getReservation", "--host", "node3").out == "Host node3 is not reserved.\n"
    assert cluster.ok("addReservation", "--host", "node3", "--user", "alice").out == (
        "Host node3 reserved for users alice.\n"
    )
    both = cluster.ok("addReservation", "--host", "node3", "--user", "admin").out
    assert both.startswith("Host node3 reserved for users ")
    assert sorted(both.removeprefix("Host node3 reserved for users ")[:-2].split(", ")) == [
        "admin",
        "alice",
    ]
    assert cluster.ok("getReservation", "--host", "node3").out == both
    cluster.ok("delReservation", "--host", "node3", "--user", "alice")
    cluster.ok("delReservation", "--host", "node3", "--user", "admin")
    assert "not reserved" in cluster.ok("getReservation", "--host", "node3").out
    assert cluster.tashi("addReservation", "--host", "node3", "--user", "nobody").status == 3
    assert cluster.ok("delHost", "--host", "node3").out == "Host node3 (hostId 3) unregistered.\n"
    assert cluster.tashi("unregisterHost", "--hostId", "node3").status == 3


# --- instances -----------------------------------------------------------------------------


def test_create_list_and_destroy_one_vm(cluster: Cluster) -> None:
    cluster.ok("addNetwork", "--id", "8", "--name", "data")
    made = cluster.ok(
        "createVm",
        "--name",
        "web",
        "--disks",
        "base.qcow2:True,other.img",
        "--nics",
        "data:198.18.0.5:,::",
        "--memory",
        "256",
        "--hints",
        "display=True",
    )
    lines = made.out.splitlines()
    assert lines[0].split() == ["id", "hostId", "name", "user", "state", "disk", "memory", "cores"]
    iid, host, name, user, state, disk, memory, cores = made.rows()[0]
    assert (host, name, user, state, disk, memory, cores) == (
        "-",
        "web",
        "admin",
        "Pending",
        "base.qcow2:True",
        "256",
        "1",
    )
    vm = cluster.ok("getInstances", "--name", "web", "--json").json()[0]
    assert [n["network"] for n in vm["nics"]] == [8, 1]
    assert vm["nics"][0]["ip"] == "198.18.0.5"
    assert vm["nics"][0]["mac"].startswith("52:54:00:")
    assert vm["hints"] == {"display": "True"}
    shown = cluster.ok(
        "getInstances", "--state", "pending", "--hide-all", "--show-name", "--show-cpuShare"
    ).rows()
    assert ["web", "1024"] in shown
    assert cluster.ok("destroyVm", "--instance", iid).out == f"{iid} was removed.\n"
    assert cluster.tashi("destroyVm", "--instance", "web").status == 3


def test_create_many_and_the_batch_verbs(cluster: Cluster) -> None:
    made = cluster.ok("createMany", "--basename", "w", "--count", "3", "--disks", "other.img")
    assert [row[2] for row in made.rows()] == ["w-0", "w-1", "w-2"]
    names = [row[2] for row in cluster.ok("getInstances").rows()]
    assert {"w-0", "w-1", "w-2"} <= set(names)
    shut = cluster.tashi("shutdownMany", "--basename", "w")
    assert shut.status == 5  # Pending instances are not running: each is refused
    assert shut.err.count("\n") == 3
    assert "w-0: cannot shutdown" in shut.err
    gone = cluster.ok("destroyMany", "--basename", "w")
    assert len(gone.out.splitlines()) == 3
    assert cluster.tashi("destroyMany", "--basename", "w").status == 3


def test_lifecycle_verbs_refuse_an_instance_that_is_not_running(cluster: Cluster) -> None:
    cluster.ok("createVm", "--name", "idle", "--disks", "other.img")
    for verb in ("shutdownVm", "pauseVm", "unpauseVm", "suspendVm", "resumeVm"):
        ran = cluster.tashi(verb, "--instance", "idle")
        assert ran.status == 5, (verb, ran.err)
        assert "Pending" in ran.err
    assert cluster.tashi("migrateVm", "--instance", "idle", "--dst", "node2").status == 5
    assert cluster.tashi("migrateVm", "--instance", "idle", "--targetHostId", "2").status == 5
    assert cluster.tashi("vmmSpecificCall", "--instance", "idle", "--arg", "list").status == 5
    assert cluster.tashi("pauseVm", "--instance", "nosuchvm").status == 3
    cluster.ok("destroyVm", "--instance", "idle")


def test_layout_and_slots(cluster: Cluster) -> None:
    rows = cluster.ok("getVmLayout").rows()
    assert rows[0] == ["1", "node1", "Drained", "-", "0", "0", "0", "0"]
    ran = cluster.ok("getSlots", "--cores", "2", "--memory", "512")
    assert ran.out == "0 available slots for instances with 2 core(s) and 512 MB of memory.\n"
    assert cluster.ok("getSlots", "--json").json() == {"slots": 0, "cores": 1, "memory": 128}
    assert ran.err == ""  # an admin sees every instance: no note


def test_bad_input_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    before = cluster.ok("getInstances", "--json").json()
    cases = [
        (["--name", "x1", "--disks", "nothere.qcow2"], 3),
        (["--name", "x2", "--disks", "other.img", "--cores", "100"], 6),
        (["--name", "x3", "--disks", "other.img", "--memory", "0"], 6),
        (["--name", "x4", "--disks", "other.img", "--nics", "99::"], 3),
        (["--name", "x5", "--disks", "other.img", "--nics", "nonet::"], 2),
        (["--name", "x6", "--disks", "../secret"], 2),
        (["--name", "x7", "--disks", "other.img", "--cores", "abc"], 2),
        (["--name", "x8", "--disks", "other.img", "--hints", "novalue"], 2),
    ]
    for argv, status in cases:
        ran = cluster.tashi("createVm", *argv)
        assert ran.status == status, (argv, ran.err)
        assert ran.err.count("\n") == 1
    assert cluster.ok("getInstances", "--json").json() == before


# --- a plain user ----------------------------------------------------------------------------


def test_a_user_sees_only_their_own_and_no_admin_verbs(cluster: Cluster) -> None:
    alice = cluster.user_config("alice", "alice-pass-1")
    created = cluster.ok("createVm", "--name", "admins-vm", "--disks", "other.img", "--json")
    assert (created.json()["name"], created.json()["user"]) == ("admins-vm", "admin")
    cluster.ok("createVm", "--name", "alices-vm", "--disks", "other.img", config=alice)
    mine = [row[2] for row in cluster.ok("getInstances", config=alice).rows()]
    assert mine == ["alices-vm"]
    assert [row[2] for row in cluster.ok("getMyInstances", config=alice).rows()] == ["alices-vm"]
    everyone = [row[2] for row in cluster.ok("getInstances").rows()]
    assert {"admins-vm", "alices-vm"} <= set(everyone)
    assert [r[2] for r in cluster.ok("getInstances", "--user", "alice").rows()] == ["alices-vm"]
    assert cluster.tashi("destroyVm", "--instance", "admins-vm", config=alice).status in (3, 8)
    assert cluster.tashi("addHost", "--host", "evil", config=alice).status == 8
    assert (
        cluster.tashi("setHostState", "--host", "1", "--state", "normal", config=alice).status == 8
    )
    forbidden = cluster.tashi(
        "createVm", "--name", "sneaky", "--disks", "other.img", "--userId", "admin", config=alice
    )
    assert forbidden.status == 8
    layout = cluster.ok("getVmLayout", config=alice)
    assert "only your own instances" in layout.err
    cluster.ok("destroyVm", "--instance", "alices-vm", config=alice)
    cluster.ok("destroyVm", "--instance", "admins-vm")


def test_credentials_from_home_and_from_the_environment(cluster: Cluster) -> None:
    home = cluster.root / "alice-home"
    (home / ".tashi").mkdir(parents=True)
    cluster.user_config("alice", "alice-pass-1").replace(home / ".tashi" / "Client.cfg")
    ran = cluster.ok("whoami", as_admin=False, home=home)
    assert ran.rows()[0][1] == "alice"
    env = {
        "TASHI_CM_HOST": "127.0.0.1",
        "TASHI_CM_PORT": str(cluster.port),
        "TASHI_USER": "alice",
        "TASHI_PASSWORD": "alice-pass-1",
    }
    assert cluster.ok("whoami", as_admin=False, env=env).rows()[0][1] == "alice"
    wrong = cluster.tashi("whoami", as_admin=False, env={**env, "TASHI_PASSWORD": "nope-nope"})
    assert wrong.status == 9
    none = cluster.tashi("whoami", as_admin=False)
    assert none.status == 9
    assert "admin-credentials.cfg" in none.err


def test_a_stopped_cluster_manager_is_unavailable(cluster: Cluster) -> None:
    env = {"TASHI_CM_PORT": str(free_port())}
    ran = cluster.tashi("getHosts", env=env)
    assert ran.status == 11
    assert "TASHI_CM_HOST" in ran.err
