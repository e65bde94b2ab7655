"""The hollow hosts' process, and the benchmark's handle on it.

``python -m bench.hollowproc`` runs one ``hollow.Fleet`` in one asyncio loop and takes orders
as JSON lines on its standard input, answering each with one JSON line on its standard output:

- ``{"op": "start", "cm_url", "username", "password", "root", "period", "memory", "cores"}``
- ``{"op": "grow", "count": N}`` → ``{"hosts": [[name, id], ...]}`` once all N registered
- ``{"op": "settle"}`` sets the objects made so far out of the garbage collector's way
  (``Fleet.settle``: after a fill, a heartbeat period before a window);
- ``{"op": "window"}`` opens a measurement window; ``{"op": "stats"}`` → what it saw
- ``{"op": "stop"}`` (or the end of its input) stops every host and exits.

A process of its own, so that the benchmark's single-object calls are timed by a client that
is not queued behind thousands of heartbeats, and so that the load generator's CPU is read
apart from the benchmark's (``/proc/<pid>/stat``). ``HollowProcess`` is that handle: it
starts the process in its own session, sends orders with a deadline, and stops it by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tashi.devcluster.processes import stop_child

STOP_TIMEOUT = 30.0


class HollowError(RuntimeError):
    """The hollow hosts' process failed an order or died; the message says which and why."""


def memory_dir() -> str | None:
    """Where the hosts' state directories go: a tmpfs when there is one. Each host writes its
    lease deadline at every heartbeat (for the watchdog, as ``tashi-nm`` does); on this
    machine's disk a rename costs about 2 ms and blocks the loop, and thousands of them a
    second would contend with the cluster manager's own database for the disk, which a real
    host, with a disk of its own, does not."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class HollowProcess:
    """The running hollow-host process; ``root``: a directory for its hosts' state, removed
    at ``stop``."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.root = Path(tempfile.mkdtemp(prefix="tashi-hollow-", dir=memory_dir()))
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.hollowproc"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def order(self, timeout: float, **order: Any) -> dict[str, Any]:
        """Send one order; its answer, or ``HollowError`` (with the log's tail)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(order).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise HollowError(f"the hollow hosts' process died:\n{self.tail()}") from None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise HollowError(f"{order['op']}: no answer in {timeout:.0f} s:\n{self.tail()}")
        line = self.process.stdout.readline()
        if not line:
            raise HollowError(f"the hollow hosts' process died:\n{self.tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise HollowError(f"{order['op']}: {answer['error']}\n{self.tail()}")
        return answer

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        """Ask it to stop; SIGTERM, then SIGKILL, by pid if it does not."""
        if self.process.poll() is None:
            with contextlib.suppress(HollowError):  # then it is stopped by signal
                self.order(STOP_TIMEOUT, op="stop")
        stop_child(self.process, STOP_TIMEOUT)
        shutil.rmtree(self.root, ignore_errors=True)


async def _serve() -> None:
    from bench.hollow import Fleet, Options

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    fleet: Fleet | None = None
    try:
        while line := await reader.readline():
            order = json.loads(line)
            op = order.pop("op")
            if op == "stop":
                _answer({"ok": True})
                break
            try:
                if op == "start":
                    fleet = Fleet(Options(**{**order, "root": Path(order["root"])}))
                    await fleet.start()
                    _answer({"ok": True})
                elif fleet is None:
                    _answer({"error": f"{op} before start"})
                elif op == "grow":
                    started = time.monotonic()
                    hosts = await fleet.grow(int(order["count"]))
                    _answer({"hosts": hosts, "seconds": time.monotonic() - started})
                elif op == "settle":
                    fleet.settle()
                    _answer({"ok": True})
                elif op == "window":
                    fleet.window()
                    _answer({"ok": True})
                elif op == "stats":
                    _answer(fleet.stats())
                else:
                    _answer({"error": f"unknown order {op!r}"})
            # A supervision boundary: the benchmark is told what failed and decides.
            except Exception as exc:
                logging.getLogger("bench.hollow").exception("order %s failed", op)
                _answer({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        if fleet is not None:
            await fleet.close()


def _answer(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 3 sockets a host
    os.umask(0o077)
    asyncio.run(_serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
