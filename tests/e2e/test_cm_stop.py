"""A real ``tashi-cm`` stopping and starting, on SQLite and on real PostgreSQL and MariaDB
servers: SIGTERM ends it within 2 s (it measured about 0.3 s) while the scheduler long-polls,
and the long-poll held at that moment is answered, not reset; a second cluster manager on the
same database refuses to start, with one clear line, while the first holds it, and starts at
once when the first is SIGKILLed. A database server that restarts under a running cluster
manager ends the hold's session: the cluster manager takes the hold again, or, if another
took it first, stops with status 1."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tashi.api import paths
from tashi.api.schemas import UserIn
from tashi.client.sdk import TashiClient
from tashi.storage.sql.hold import take_hold
from tests.e2e.harness import Cluster, admin_login, cm_daemon, wait_for
from tests.fixtures.dbservers import KIND_PARAMS, FreshDatabase, Server
from tests.scheduler import live

KINDS = KIND_PARAMS
STOP_BOUND = 2.0  # seconds from SIGTERM to exit (issue 26)
POLL_TIMEOUT = 25.0  # the scheduler's long-poll


def sql_section(fresh: Callable[[str], FreshDatabase], kind: str) -> dict[str, object] | None:
    if kind == "sqlite":
        return None  # the default: tashi.sqlite in the state directory
    database = fresh(kind)
    return {"uri": database.uri, "password": database.password}


def start(root: Path, sql: dict[str, object] | None) -> Cluster:
    vfs = root / "vfs"
    (vfs / "images").mkdir(parents=True)
    return Cluster.start(root, vfs, sql=sql)


def agent_token(port: int) -> str:
    body = {"username": live.AGENT, "password": live.AGENT_PASSWORD}
    reply = httpx.post(f"http://127.0.0.1:{port}{paths.TOKEN}", json=body, timeout=10)
    reply.raise_for_status()
    return str(reply.json()["token"])


def unread(server_port: int, client_port: int) -> int | None:
    """Bytes the server has not read yet on its end of the connection from ``client_port``
    (``/proc/net/tcp``'s rx_queue); ``None`` if there is no such connection."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if (
            int(local.split(":")[1], 16) == server_port
            and int(remote.split(":")[1], 16) == client_port
        ):
            return int(queues.split(":")[1], 16)
    return None


def held_long_poll(port: int, token: str) -> tuple[socket.socket, int]:
    """A long-poll of the change feed that the cluster manager has read and now holds (its
    version is the current one), and that version."""
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}{paths.INSTANCE_CHANGES}"
    version = int(httpx.get(url, params={"timeout": 0}, headers=headers).json()["version"])
    poll = socket.create_connection(("127.0.0.1", port))
    poll.sendall(
        f"GET {paths.INSTANCE_CHANGES}?after={version}&timeout={POLL_TIMEOUT:g} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    mine = poll.getsockname()[1]
    wait_for("the cluster manager to read the long-poll", lambda: unread(port, mine) == 0)
    return poll, version


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_ends_the_cluster_manager_within_2_s_answering_its_long_polls(
    kind: str, tmp_path: Path, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    c = start(tmp_path, sql_section(fresh_database, kind))
    try:
        c.admin.register_user(UserIn(name=live.AGENT, password=live.AGENT_PASSWORD, role="agent"))
        log = tmp_path / "sched.log"
        with live.scheduler(c):
            wait_for(
                "the scheduler to log in", lambda: log.exists() and "policy" in log.read_text()
            )
            poll, version = held_long_poll(c.cm.port, agent_token(c.cm.port))
            with poll:
                process = c.cm.process
                assert process is not None and process.poll() is None
                sent = time.monotonic()
                process.send_signal(signal.SIGTERM)
                status = process.wait(timeout=30)
                took = time.monotonic() - sent
                answer = read_all(poll)
            scheduler_log = log.read_text()
        print(f"\ntashi-cm ({kind}) exited {took:.2f} s after SIGTERM, status {status}")
        assert status == 0
        assert took < STOP_BOUND
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer
        assert b"connection: close" in head.lower()
        assert body == f'{{"version":{version}}}'.encode()
        # the scheduler's own long-poll was answered too: a reset reads "Server disconnected"
        assert "Server disconnected" not in scheduler_log
        assert "stopped" in c.cm.log_tail(3)  # its clean-up ran
    finally:
        c.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_cluster_manager_refuses_the_database_until_the_first_is_gone(
    kind: str, tmp_path: Path, fresh_database: Callable[[str], FreshDatabase]
) -> None:
    sql = sql_section(fresh_database, kind)
    c = start(tmp_path, sql)
    second = cm_daemon(tmp_path, "tashi-cm-2", tmp_path / "vfs", sql=sql)
    try:
        spawned = time.time()
        refused = second.spawn()
        assert refused.wait(timeout=60) == 1
        first_try = second.logged_at("waiting up to", spawned)  # its start-up, for comparison
        said = second.log.read_text()
        assert "Traceback" not in said
        last = said.strip().splitlines()[-1]  # after its log's "waiting up to 3 s"
        assert last.startswith(
            "tashi-cm: cannot start: another cluster manager holds the database"
        ), said
        if kind != "mariadb":  # MariaDB names the holder's connection, not its process
            assert f"tashi-cm pid {c.cm.pid} on {socket.gethostname()}" in last

        c.cm.kill()
        killed, started = time.time(), time.monotonic()
        second.start()
        took = time.monotonic() - started
        held = second.logged_at("this cluster manager holds the database", killed)
        assert held is not None
        assert second.logged_at("waiting up to", killed) is None  # free at once
        print(
            f"\nthe second tashi-cm ({kind}) held the database {held - killed:.2f} s and served"
            f" {took:.2f} s after the first's SIGKILL (from its spawn to its first try of the"
            f" hold, while the first ran: {(first_try or spawned) - spawned:.2f} s)"
        )
        again = TashiClient(f"http://127.0.0.1:{second.port}", **admin_login(c.root))
        try:
            assert "node" in {u.name for u in again.get_users()}  # the same database
        finally:
            again.close()
        second.stop()
        assert second.process is not None and second.process.returncode == 0
    finally:
        second.stop()
        c.stop()


def test_the_cluster_manager_takes_its_hold_again_after_the_database_restarts(
    own_server: Server, tmp_path: Path
) -> None:
    name = own_server.create_database().rsplit("/", 1)[1].split("?")[0]
    sql: dict[str, object] = {"uri": own_server.uri(name), "password": own_server.password}
    c = start(tmp_path, sql)
    second = cm_daemon(tmp_path, "tashi-cm-2", tmp_path / "vfs", sql=sql)
    try:
        since = time.time()
        own_server.halt()
        wait_for("the lost session noticed", lambda: c.cm.logged_at("lost the session", since))
        own_server.restart()
        wait_for("the hold taken again", lambda: c.cm.logged_at("holds the database", since))
        assert second.spawn().wait(timeout=60) == 1  # refused: the first holds it again
        c.cm.wait_healthy()
    finally:
        second.stop()
        c.stop()


def test_a_cluster_manager_whose_hold_was_taken_during_an_outage_stops(
    own_server: Server, tmp_path: Path
) -> None:
    url = own_server.create_database()
    name = url.rsplit("/", 1)[1].split("?")[0]
    c = start(tmp_path, {"uri": own_server.uri(name), "password": own_server.password})
    try:
        process = c.cm.process
        assert process is not None
        process.send_signal(signal.SIGSTOP)  # so that the newcomer is first after the restart
        try:
            own_server.halt()
            own_server.restart()
            newcomer = take_hold(make_url(url), wait=0, owner="the newcomer")
        finally:
            process.send_signal(signal.SIGCONT)
        try:
            assert process.wait(timeout=30) == 1
        finally:
            newcomer.release()
        said = c.cm.log_tail(5)
        assert "another cluster manager took the database" in said
        assert "the newcomer" in said or own_server.kind == "mariadb"
        assert "Traceback" not in c.cm.log.read_text()
    finally:
        c.stop()
