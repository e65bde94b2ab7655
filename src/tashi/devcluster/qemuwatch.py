"""Watching every QEMU process of a virtual cluster, to prove that no VM ever runs twice.

All hosts of a virtual cluster share this machine's process table (they are network
namespaces), so one watcher sees every VM: a QEMU process of host ``H`` for instance ``I`` is one
whose command line carries ``-pidfile <...>/hosts/<H>/state/vms/<I>/qemu.pid``. ``QemuWatch``
scans ``/proc`` every ``interval`` seconds in one thread and holds a pidfd for each process it
has seen; a second thread blocks on all those pidfds and records each end the moment the kernel
reports it. So each life has its start (the kernel's start time, on ``CLOCK_BOOTTIME``, to a
clock tick) and its end (within milliseconds). A process that starts and ends between two scans
is missed: QEMU lives far longer than a scan.

``overlaps()`` then lists every pair of processes of one instance on two hosts whose lives
overlapped: the second started before the first had surely ended. Two exceptions are not
duplicates: the target of a live migration (``-incoming``: QEMU itself hands the guest over, the
source pausing before the target runs), and, on one host, the parent a daemonizing QEMU leaves
for a moment. Because the end is known only to within
``interval``, a pair is reported only when the second started before the first's earliest
possible end; ``min_gap`` says how close the closest pair came.
"""

from __future__ import annotations

import itertools
import os
import re
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tashi.devcluster import processes

_PIDFILE = re.compile(rb"/hosts/([^/]+)/state/vms/(\d+)/qemu\.pid$")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Life:
    """One QEMU process of one instance on one host."""

    instance: int
    host: str
    pid: int
    started: float  # CLOCK_BOOTTIME seconds
    ended: float | None = None  # when its pidfd reported its end
    incoming: bool = False  # started as a migration target


def boottime() -> float:
    """Now on ``CLOCK_BOOTTIME``, the clock of the kernel's process start times."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _started(pid: int) -> float | None:
    ticks = processes.start_time(pid)
    return None if ticks is None else ticks / _TICKS


def _vm_of(pid: int, root: bytes) -> tuple[str, int, bool] | None:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for arg in args:
        match = _PIDFILE.search(arg)
        if match and arg.startswith(root):
            return match.group(1).decode(), int(match.group(2)), b"-incoming" in args
    return None


class QemuWatch:
    """``root``: the cluster's state directory (only its VMs are followed); ``None``: all."""

    def __init__(self, root: Path | None = None, interval: float = 0.1) -> None:
        self.interval = interval
        self._root = os.fsencode(str(root)) if root is not None else b""
        self.lives: list[Life] = []
        self._fds: dict[int, Life] = {}  # pidfd -> the life it follows
        self._known: set[tuple[int, float]] = set()  # (pid, start) already followed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._poller = select.poll()
        self._wake_r, self._wake_w = os.pipe()
        self._poller.register(self._wake_r, select.POLLIN)
        self._threads = [
            threading.Thread(target=self._scan_forever, name="qemu-scan", daemon=True),
            threading.Thread(target=self._reap_forever, name="qemu-reap", daemon=True),
        ]

    def __enter__(self) -> QemuWatch:
        self.scan()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        for thread in self._threads:
            if thread.is_alive():
                thread.join()
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _scan_forever(self) -> None:
        while not self._stop.wait(self.interval):
            self.scan()

    def _reap_forever(self) -> None:
        while not self._stop.is_set():
            events = self._poller.poll()
            now = boottime()
            with self._lock:
                for fd, _ in events:
                    if fd == self._wake_r:
                        os.read(fd, 64)
                        continue
                    life = self._fds.pop(fd, None)
                    if life is not None:
                        life.ended = now
                        self._poller.unregister(fd)
                        os.close(fd)

    def scan(self) -> None:
        with self._lock:
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    self._follow(int(entry.name))

    def _follow(self, pid: int) -> None:
        vm = _vm_of(pid, self._root)
        if vm is None:
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        started = _started(pid)  # read after the pidfd holds the process
        if started is None or (pid, started) in self._known:
            os.close(fd)
            return
        self._known.add((pid, started))
        life = Life(vm[1], vm[0], pid, started, incoming=vm[2])
        self.lives.append(life)
        self._fds[fd] = life
        self._poller.register(fd, select.POLLIN)
        os.write(self._wake_w, b"x")  # the reaper polls the new set

    def running(self, instance: int) -> list[Life]:
        with self._lock:
            return [life for life in self.lives if life.instance == instance and life.ended is None]

    def overlaps(self) -> list[tuple[Life, Life]]:
        """Pairs of processes of one instance that surely ran at the same time."""
        with self._lock:
            lives = sorted(self.lives, key=lambda life: life.started)
        pairs = []
        for i, first in enumerate(lives):
            for second in lives[i + 1 :]:
                if second.instance != first.instance or second.host == first.host:
                    continue
                if second.incoming:
                    continue
                if second.started < (first.ended if first.ended is not None else float("inf")):
                    pairs.append((first, second))
        return pairs

    def min_gap(self, instance: int) -> float | None:
        """The shortest time between a process of ``instance`` ending and one on another host
        starting after it (negative: they overlapped); ``None`` if it never moved."""
        with self._lock:
            lives = sorted(
                (life for life in self.lives if life.instance == instance and not life.incoming),
                key=lambda life: life.started,
            )
        gaps = [
            b.started - (a.ended if a.ended is not None else float("inf"))
            for a, b in itertools.combinations(lives, 2)
            if a.host != b.host
        ]
        return min(gaps) if gaps else None
