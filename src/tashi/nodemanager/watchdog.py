"""The node manager's watchdog: stops the host's VMs when the lease runs out and no node
manager is left to do it (ADR 0010).

``tashi-nm`` starts it (``ensure_running``) in a session of its own, so that it outlives the
node manager: a SIGKILL, an OOM kill or a crash of ``tashi-nm`` leaves it running, as Proxmox's
watchdog outlives its HA daemon. It reads ``lease-deadline`` from the node manager's state
directory a few times a second; once that moment has passed (plus ``--grace``, which leaves the
node manager, if it lives, time to stop its VMs in order), it kills every VM process of the
host (``fencing.kill_vms``) and marks each instance fenced, and keeps doing so while the
deadline stays in the past. A node manager that comes back within its lease renews the deadline
and nothing is stopped.

It holds an exclusive lock on ``watchdog.pid`` for as long as it runs, so there is one per state
directory, and the node manager can tell whether it runs without trusting a pid. It asks the
kernel's OOM killer to spare it. It ends by itself when there is nothing left to guard: no node
manager holds ``nm.lock`` (``hold_node_lock``) and no VM process of the host is left, or the
state directory is gone.
It imports little besides ``fencing`` (and through it the QEMU driver's process helpers): a
few MB, started in a tenth of a second. ``Keeper`` is the node manager's side: it starts the
watchdog and starts it again if it ends. Tests and ``tashi-cluster`` end it with
``devcluster.strays.kill_watchdog``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from tashi.nodemanager import fencing

PIDFILE = "watchdog.pid"
LOGFILE = "watchdog.log"
NODE_LOCK = "nm.lock"
POLL = 0.2  # seconds between two looks at the deadline
#: After the deadline, for the node manager to fence in order if it lives. POLL + GRACE plus a
#: SIGKILL must stay well under the cluster manager's restartMargin (at least 1 s).
GRACE = 0.25

log = logging.getLogger("tashi.nm.watchdog")


def _exclusive(path: Path) -> IO[str] | None:
    """An exclusive lock on ``path``, held for as long as the returned file stays open;
    ``None`` if another process holds it."""
    handle = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held for life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def hold_node_lock(state_dir: Path) -> IO[str] | None:
    """The node manager's lock on its state directory; ``None`` if another node manager
    holds it."""
    return _exclusive(state_dir / NODE_LOCK)


def running(state_dir: Path) -> bool:
    """Whether a watchdog holds this state directory's lock."""
    return _held(state_dir / PIDFILE)


def _held(path: Path) -> bool:
    try:
        handle = open(path, "a+", encoding="ascii")  # noqa: SIM115
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


class Keeper:
    """Keeps the host's watchdog running for a node manager: started before any VM is
    re-attached, checked again with every lease pass, its exit reaped. A watchdog that is still
    starting (before it holds its lock) is waited for, never started twice."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._child: subprocess.Popen[bytes] | None = None

    def ensure(self) -> None:
        if self._child is not None:
            if self._child.poll() is None:
                return
            log.warning("the watchdog ended (status %s); starting it again", self._child.returncode)
            self._child = None
        started = ensure_running(self._dir)
        if started is not None:
            self._child = started
            log.info("started the watchdog (pid %d)", started.pid)


def ensure_running(state_dir: Path, grace: float = GRACE) -> subprocess.Popen[bytes] | None:
    """Start the watchdog for ``state_dir`` unless one runs; the new process (to be reaped by
    the caller with ``poll``), or ``None``."""
    if running(state_dir):
        return None
    argv = [
        sys.executable,
        "-m",
        "tashi.nodemanager.watchdog",
        "--state-dir",
        str(state_dir),
        "--grace",
        str(grace),
    ]
    with open(state_dir / LOGFILE, "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )


def _spare_from_oom() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("-1000\n")


def watch(state_dir: Path, grace: float, poll: float = POLL) -> None:
    """Run until there is nothing left to guard."""
    fenced_for: float | None = None  # the deadline whose passing was last logged
    while state_dir.is_dir():
        if not _held(state_dir / NODE_LOCK) and not fencing.has_vms(state_dir):
            log.info("no node manager and no VM left in %s; the watchdog ends", state_dir)
            return
        deadline = fencing.read_deadline(state_dir)
        if deadline is not None and time.monotonic() > deadline + grace:
            killed = fencing.kill_vms(state_dir)
            if killed or fenced_for != deadline:
                log.error(
                    "the lease ran out %.1f s ago and no node manager renewed it: killed the"
                    " VMs of instances %s",
                    time.monotonic() - deadline,
                    killed,
                )
            fenced_for = deadline
        time.sleep(poll)
    log.info("state directory %s is gone; the watchdog ends", state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tashi.nodemanager.watchdog",
        description="Kill this host's VMs once the node manager's lease has run out (started"
        " by tashi-nm; not meant to be run by hand).",
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--grace", type=float, default=GRACE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    held = _exclusive(args.state_dir / PIDFILE)
    if held is None:
        return 0  # another watchdog watches this directory
    held.truncate(0)
    held.write(f"{os.getpid()}\n")
    held.flush()
    _spare_from_oom()
    log.info("watching %s (pid %d)", args.state_dir, os.getpid())
    watch(args.state_dir, args.grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
