"""What a node manager leaves outside what ``tashi-cluster`` records: its watchdog process and
the machine's boot-slot directory. ``cluster.py`` ends and removes them at ``rm N`` and ``stop``.

* The **watchdog**: ``tashi-nm`` starts a small watchdog of its host, detached, that outlives
  it; its pid is in ``<the node manager's stateDir>/watchdog.pid``. Before that pid is
  signalled, its command line must name ``tashi.nodemanager.watchdog``: a pid file left by a
  watchdog that ended long ago may name another program by now.
* The **boot slots** (``[Qemu] bootSlotDir``, ``/run/tashi/boot-slots``: lock files the node
  managers of one machine share, made when first needed). The directory goes, with
  ``/run/tashi`` if that is then empty, once no process has a slot file open: a node manager of
  another cluster that holds a slot keeps it. ``boot_slots_left`` says whether they are still
  there when no node manager runs on the machine any more (what the tests of ``stop`` check).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tashi.config.nodemanager import QemuSettings
from tashi.devcluster import processes

WATCHDOG_PID_FILE = "watchdog.pid"
WATCHDOG_MARK = b"tashi.nodemanager.watchdog"
NODE_MANAGER_MARK = b"/tashi-nm\0"  # the console script, run by its path
BOOT_SLOTS = QemuSettings().boot_slot_dir


def kill_watchdog(nm_state: Path) -> int | None:
    """SIGKILL the watchdog named by ``nm_state/watchdog.pid`` and wait (with a deadline) until
    it is gone; its pid, or ``None`` when there is no such file or it names no watchdog."""
    try:
        text = (nm_state / WATCHDOG_PID_FILE).read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    started = processes.start_time(pid)
    if started is None or WATCHDOG_MARK not in _cmdline(pid):
        return None
    processes.stop_pid(pid, started, sig=signal.SIGKILL, timeout=processes.KILL_TIMEOUT)
    return pid


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def remove_boot_slots(directory: Path = BOOT_SLOTS) -> list[str]:
    """Remove the boot-slot directory (and its parent when that is left empty) unless a
    process has one of its files open; what could not be removed (empty: nothing left, or in
    use by someone else, which is no leftover of ours)."""
    if not directory.is_dir() or _open_by_anyone(directory):
        return []
    left = []
    for path in directory.iterdir():
        try:
            path.unlink()
        except OSError as exc:
            left.append(f"cannot remove {path}: {exc.strerror}")
    try:
        directory.rmdir()
    except OSError as exc:
        left.append(f"cannot remove {directory}: {exc.strerror}")
    with contextlib.suppress(OSError):  # not empty: another program's files are there
        directory.parent.rmdir()
    return left


def boot_slots_left(
    directory: Path = BOOT_SLOTS, node_manager: bytes = NODE_MANAGER_MARK
) -> list[str]:
    """What is left of the boot slots (the directory, or its parent left empty) while no node
    manager (a process whose command line has ``node_manager``) runs on this machine; empty
    when nothing is, or when one runs (another cluster's, which makes and uses them: they are
    not left over then)."""
    if any(node_manager in _cmdline(int(entry.name)) for entry in _pids()):
        return []
    if directory.is_dir():
        return [str(directory)]
    parent = directory.parent
    return [f"{parent} (empty)"] if parent.is_dir() and not any(parent.iterdir()) else []


def _pids() -> list[Path]:
    return [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _open_by_anyone(directory: Path) -> bool:
    """Whether any process has a file of ``directory`` open (read from ``/proc/*/fd``)."""
    prefix = f"{directory.resolve()}/"
    for entry in _pids():
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for fd in fds:
            try:
                if os.readlink(fd).startswith(prefix):
                    return True
            except OSError:
                continue
    return False
