"""Errors tell callers what they need and nothing more (issue 26, point 7), from real daemons:
a ``tashi-cm`` on a real PostgreSQL server (over its Unix socket, as the issue's cluster was)
and a ``tashi-nm`` (fake VMM), each failing for real.

- the node manager cannot make a VM's overlay (a file is in the way of its directory): it answers
  its cluster manager with a sentence, the cluster manager answers the caller with another, and
  both logs hold the detail under the one request id the caller was given;
- the node manager is gone: the caller is told so, the log has its address;
- the database server is stopped: every call, the ``tashi`` command's included, is told that
  the database is unavailable, with a request id under which the log has the server's words
  (its socket's path and port), which the caller never sees.

The checks of an error body are those of ``tests/web/test_error_privacy.py``.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tashi.api.schemas import DiskIn, InstanceIn, NetworkIn
from tests.e2e.harness import BIN, Cluster
from tests.fixtures.dbservers import Server, serving, start_postgres
from tests.web.test_error_privacy import discreet


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    yield from serving(start_postgres)  # its own: a test halts it


@pytest.fixture
def cluster(tmp_path: Path, postgres: Server) -> Iterator[Cluster]:
    database = postgres.create_database().rsplit("/", 1)[1]
    vfs = tmp_path / "vfs"
    (vfs / "images").mkdir(parents=True)
    (vfs / "images" / "disk.img").write_bytes(b"\0" * 4096)
    sql: dict[str, object] = {"uri": postgres.socket_uri(database), "password": postgres.password}
    c = Cluster.start(tmp_path, vfs, sql=sql, expireHostTime=120.0)
    try:
        c.admin.add_network(NetworkIn(id=1, name="default"))
        yield c
    finally:
        c.stop()
        postgres.drop_database(database)


def credentials(c: Cluster) -> Path:
    return c.root / "cm-state" / "admin-credentials.cfg"


def admin_token(c: Cluster) -> dict[str, str]:
    creds = configparser.ConfigParser(interpolation=None)
    creds.read(credentials(c))
    access = creds["AccessClusterManager"]
    login = {"username": access["username"], "password": access["password"]}
    reply = httpx.post(f"http://127.0.0.1:{c.cm.port}/v1/auth/token", json=login)
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def call(c: Cluster, method: str, path: str, who: dict[str, str], **kw: object) -> httpx.Response:
    return httpx.request(method, f"http://127.0.0.1:{c.cm.port}{path}", headers=who, **kw)  # type: ignore[arg-type]


def lines_of(log: Path, request_id: str) -> str:
    """The lines of a daemon's log that name ``request_id``."""
    return "\n".join(line for line in log.read_text().splitlines() if request_id in line)


def test_a_node_managers_failing_files_are_told_as_its_failure(cluster: Cluster) -> None:
    c = cluster
    node = c.add_node("n1")
    vm = c.admin.create_vm(InstanceIn(name="web", disks=[DiskIn(uri="disk.img")]))
    scratch = c.root / "n1" / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / str(vm.id)).write_text("in the way of the VM's overlay directory")
    who = admin_token(c)
    reply = call(c, "POST", f"/v1/instances/{vm.id}/activate", who, json={"host": "n1"})
    assert reply.status_code == 502, reply.text
    error = discreet(reply, "scratch", str(node.port), str(c.cm.port))
    assert (error["code"], error["message"]) == ("backend_failure", "the node manager failed")
    request_id = error["requestId"]
    assert "file system failure" in lines_of(c.cm.log, request_id)
    detail = lines_of(node.log, request_id)  # the cluster manager sent its id along
    assert str(scratch / str(vm.id)) in detail and "File exists" in detail, detail
    held = c.admin.get_instance("web")
    assert held.state == "Held" and held.reason is not None
    assert str(c.root) not in held.reason and request_id in held.reason


def test_a_node_manager_gone_is_told_as_unavailable(cluster: Cluster) -> None:
    c = cluster
    node = c.add_node("n1")
    vm = c.admin.create_vm(InstanceIn(name="web", disks=[DiskIn(uri="disk.img")]))
    assert c.admin.activate_vm(vm.id, "n1").state == "Running"
    node.stop()
    reply = call(c, "POST", "/v1/instances/web/pause", admin_token(c))
    assert reply.status_code == 503, reply.text
    error = discreet(reply, str(node.port), str(c.cm.port))
    assert error["message"] == "the node manager is unavailable, retry"
    assert f"127.0.0.1:{node.port}" in lines_of(c.cm.log, error["requestId"])


def test_a_stopped_database_is_told_as_unavailable_to_every_caller(
    cluster: Cluster, postgres: Server
) -> None:
    c = cluster
    who = admin_token(c)
    secrets = (str(postgres.root), ".s.PGSQL", str(postgres.port), str(c.cm.port))
    postgres.halt()
    try:
        for method, path, body in [
            ("GET", "/v1/instances", None),
            ("GET", "/v1/hosts", None),
            ("POST", "/v1/instances", {"name": "web", "disks": [{"uri": "disk.img"}]}),
            ("POST", "/v1/auth/token", {"username": "admin", "password": "x" * 12}),
        ]:
            reply = call(c, method, path, who, json=body)
            assert reply.status_code == 502, reply.text
            error = discreet(reply, *secrets)
            assert error["message"] == "database unavailable, retry"
            detail = lines_of(c.cm.log, error["requestId"])
            assert f"{postgres.root}/.s.PGSQL.{postgres.port}" in detail, detail
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
        env.update(TASHI_CONFIG=str(credentials(c)), HOME=str(c.root))
        done = subprocess.run(
            [str(BIN / "tashi"), "getInstances"], capture_output=True, text=True, env=env
        )
        assert done.returncode == 10, done.stderr  # a backend failed
        said = re.fullmatch(
            r"tashi: error: database unavailable, retry \(request (\S+)\)\n", done.stderr
        )
        assert said, done.stderr
        assert str(postgres.root) in lines_of(c.cm.log, said.group(1))
    finally:
        postgres.restart()
    assert call(c, "GET", "/v1/instances", who).status_code == 200
