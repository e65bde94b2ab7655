"""A real ``tashi-cm`` under abuse: huge bodies, slowloris clients and password guessing.

The daemon runs as a subprocess (``tests.e2e.harness.Cluster``: its own config, a free port,
stopped by its pid) with ``requestHeadTimeout`` and ``requestBodyTimeout`` of 1 s. Its
memory is read from ``/proc/<pid>/status`` (VmRSS) while several 300 MB bodies and a score of
slowloris connections hit it at once. A client that dribbles its request waits for the server
with ``select`` between its bytes: it stops as soon as the server answers or hangs up.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tashi.devcluster.processes import Daemon, rss_mb
from tests.e2e.harness import Cluster

MIB = 1 << 20
HUGE = 300 * MIB
TIMEOUT = 1.0  # requestHeadTimeout and requestBodyTimeout of the daemon
GIVE_UP = 20.0  # a slowloris client the server has not cut off by then: the test fails


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("limits")
    (root / "vfs" / "images").mkdir(parents=True)
    cluster = Cluster.start(
        root, root / "vfs", requestHeadTimeout=TIMEOUT, requestBodyTimeout=TIMEOUT
    )
    try:
        yield cluster.cm
    finally:
        cluster.stop()


def url(cm: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{cm.port}{path}"


@dataclass
class Upload:
    """One huge POST; ``pulled`` counts the bytes the client library took from it."""

    declared: bool  # with a Content-Length, else chunked
    pulled: int = 0

    def body(self) -> Iterator[bytes]:
        block = b" " * MIB
        for _ in range(HUGE // MIB):
            self.pulled += MIB
            yield block

    def send(self, cm: Daemon) -> int:
        headers = {"content-type": "application/json"}
        if self.declared:
            headers["content-length"] = str(HUGE)
        reply = httpx.post(
            url(cm, "/v1/auth/token"), content=self.body(), headers=headers, timeout=60
        )
        assert reply.json()["error"]["code"] == "too_large", reply.text
        return reply.status_code


def slowloris(cm: Daemon, head: bytes) -> tuple[float, bytes]:
    """Send ``head``, then one byte at a time until the server answers or hangs up: how long
    that took, and what it said."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", cm.port)) as conn:
        conn.sendall(head)
        while time.monotonic() - start < GIVE_UP:
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable:
                return time.monotonic() - start, _read_all(conn)
            try:
                conn.sendall(b"x")
            except OSError:  # cut off while we wrote
                return time.monotonic() - start, _read_all(conn)
    return GIVE_UP, b""


def _read_all(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    with contextlib.suppress(OSError):  # a reset after the answer
        while chunk := conn.recv(65536):
            data += chunk
    return data


class Peak:
    """The highest VmRSS of a process while it runs (read every 10 ms in a thread)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mb = rss_mb(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(0.01):
            self.mb = max(self.mb, rss_mb(self.pid))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def warm_up(cm: Daemon) -> None:
    """Run each code path once, so that what is measured after is growth, not first use."""
    with httpx.Client(timeout=30) as http:
        assert http.get(url(cm, "/health")).status_code == 200
        wrong = {"username": "nobody", "password": "not-the-password"}
        assert http.post(url(cm, "/v1/auth/token"), json=wrong).status_code == 401
    assert Upload(declared=False).send(cm) == 413
    assert Upload(declared=True).send(cm) == 413
    slowloris(cm, b"GET /health HTTP/1.1\r\nHost: x\r\n")


def test_memory_stays_flat_under_huge_bodies_and_slowloris(cm: Daemon) -> None:
    warm_up(cm)
    before = rss_mb(cm.pid)
    uploads = [Upload(declared=i % 2 == 0) for i in range(4)]
    heads = [b"POST /v1/auth/token HTTP/1.1\r\nHost: x\r\nX-Slow: "] * 10
    bodies = [
        b"POST /v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    ] * 10
    with Peak(cm.pid) as peak, ThreadPoolExecutor(max_workers=24) as pool:
        sent = [pool.submit(u.send, cm) for u in uploads]
        slow_heads = [pool.submit(slowloris, cm, h) for h in heads]
        slow_bodies = [pool.submit(slowloris, cm, b) for b in bodies]
        statuses = [f.result(timeout=120) for f in sent]
        cut_heads = [f.result(timeout=60) for f in slow_heads]
        cut_bodies = [f.result(timeout=60) for f in slow_bodies]
    after = rss_mb(cm.pid)
    print(f"tashi-cm VmRSS: {before:.1f} MB before, peak {peak.mb:.1f} MB, {after:.1f} MB after")
    print(f"bytes taken from each 300 MB body: {[u.pulled // MIB for u in uploads]} MiB")
    assert statuses == [413] * 4
    assert all(u.pulled < 64 * MIB for u in uploads)  # the server stopped taking them early
    for took, said in cut_heads:
        assert TIMEOUT * 0.9 <= took < TIMEOUT + 4, took
        assert said.startswith(b"HTTP/1.1 408 "), said[:200]
        assert b'"code":"request_timeout"' in said
    for took, said in cut_bodies:
        assert TIMEOUT * 0.9 <= took < TIMEOUT + 4, took
        assert said.startswith(b"HTTP/1.1 408 "), said[:200]
        assert b"requestBodyTimeout" in said
    assert peak.mb - before < 30, (before, peak.mb)
    assert httpx.get(url(cm, "/health"), timeout=10).status_code == 200


def test_a_huge_head_is_refused(cm: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", cm.port)) as conn:
        with contextlib.suppress(OSError):  # cut off while we wrote: the answer is still here
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * MIB))
        said = _read_all(conn)
    assert said.startswith(b"HTTP/1.1 431 "), said[:200]
    assert b'"code":"too_large"' in said


def test_password_guessing_is_throttled(cm: Daemon) -> None:
    guess = {"username": "target", "password": "hunter2-guess-7"}
    with httpx.Client(timeout=30) as http:
        replies = [http.post(url(cm, "/v1/auth/token"), json=guess) for _ in range(50)]
    assert [r.status_code for r in replies] == [401] * 5 + [429] * 45
    assert all(int(r.headers["retry-after"]) > 0 for r in replies[5:])
    assert replies[-1].json()["error"]["code"] == "throttled"
    log = Path(cm.log).read_text()
    assert "refused login for user 'target' from 127.0.0.1" in log
    assert "hunter2-guess-7" not in log
