"""Boot slots: how many guests of one machine boot at once.

A guest's boot is a burst of CPU followed by quiet: the tiny guest needs about 1.7 CPU-seconds
under TCG, then idles at under 1 % of a core. A hundred bursts at once on two cores share them
so finely that each boot costs more (measured on this machine with 100 bare qemu: 3.05 CPU-s per
guest launched all at once, 2.21 with at most two booting), and no guest is up before all are
nearly done. So the driver lets at most ``count`` guests boot at a time: a VM started while every
slot is taken is launched with ``-S`` (everything made, its CPUs not yet running) and continued
when a slot frees. It then holds its slot until its qemu wants less than ``IDLE_CORES`` of a core
over ``WINDOW`` seconds (the burst is over: its threads neither ran nor waited to run) or
``hold`` seconds have passed.

The slots are files in one directory, each held by an ``flock(2)``: the node managers of one
machine (``tashi-cluster``'s virtual hosts are many on one machine) share the machine's slots,
and the slots of a node manager that dies are free at once, because the kernel drops its locks.
Waiters of one process are served in the order they came.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

from tashi.domain.errors import BackendFailure, InvalidInput

POLL = 0.05  # seconds between tries of the first waiter (slots are freed by other processes too)
WINDOW = 0.5  # seconds over which a booting VM's CPU use is measured
IDLE_CORES = 0.25  # a qemu wanting less of a core than this over WINDOW has booted
SLOTS_PER_CPU = 2  # "auto": two per processor, so a freed slot never waits for the next boot


def parse_count(text: str, cpus: int | None = None) -> int:
    """``[Qemu] bootSlots`` as a number of slots; ``0`` means no limit."""
    value = text.strip().lower()
    if value == "auto":
        return SLOTS_PER_CPU * (cpus or os.cpu_count() or 1)
    if value == "off":
        return 0
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise InvalidInput(f"[Qemu] bootSlots = {text!r}: say auto, off, or a number of slots")
    return count


class Slot:
    """One held slot; ``release`` (or the process's end) frees it."""

    def __init__(self, fd: int, index: int) -> None:
        self.index = index
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None


class BootSlots:
    def __init__(self, directory: Path, count: int, *, poll: float = POLL) -> None:
        if count < 1:
            raise InvalidInput(f"{count} boot slots: there must be at least one")
        self.directory, self.count, self._poll = directory, count, poll
        self._waiting: deque[object] = deque()

    @property
    def waiting(self) -> int:
        """Waiters of this process."""
        return len(self._waiting)

    def try_take(self) -> Slot | None:
        """A free slot, or ``None`` when all are held (by any process); never waits. Waiters of
        this process come first: nobody overtakes them."""
        return None if self._waiting else self._grab()

    async def take(self) -> Slot:
        """The next free slot, after this process's earlier waiters."""
        ticket = object()
        self._waiting.append(ticket)
        try:
            while True:
                if self._waiting[0] is ticket:
                    slot = self._grab()
                    if slot is not None:
                        return slot
                await asyncio.sleep(self._poll)
        finally:
            self._waiting.remove(ticket)

    def _grab(self) -> Slot | None:
        for index in range(self.count):
            path = self.directory / f"slot-{index}"
            fd = self._open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except OSError as exc:
                os.close(fd)
                raise BackendFailure(f"boot slots: cannot lock {path}: {exc}") from exc
            return Slot(fd, index)
        return None

    def _open(self, path: Path) -> int:
        """The slot's lock file, made (with its directory) when missing: no mkdir per poll."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            try:
                return os.open(path, flags, 0o644)
            except FileNotFoundError:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
                return os.open(path, flags, 0o644)
        except OSError as exc:
            raise BackendFailure(f"boot slots: cannot open {path}: {exc}") from exc


async def until_booted(
    demand: Callable[[], float | None], hold: float, *, window: float = WINDOW
) -> str:
    """Wait until a booting VM's burst is over; why it ended, for the log. ``demand`` reads
    the seconds its qemu has run or waited to run (``cpu_demand_of``; ``None`` once gone)."""
    loop = asyncio.get_running_loop()
    start = before_at = loop.time()
    before = demand()
    while before is not None:
        await asyncio.sleep(window)
        now, used = loop.time(), demand()
        if used is None:
            break
        if (used - before) / max(now - before_at, 1e-3) < IDLE_CORES:
            return f"booted after {now - start:.1f} s"
        if now - start >= hold:
            return f"still busy after {hold:g} s (bootHold)"
        before, before_at = used, now
    return "qemu ended"


def cpu_demand_of(pid: int) -> float | None:
    """Seconds the process's threads have run or waited to run (``/proc/PID/task/*/schedstat``:
    time on a CPU, time runnable on a run queue); ``None`` once it is gone.

    Demand, not use: a booting guest among many gets a small share of the processors and its
    use alone would make it look idle; an idle guest neither runs nor waits."""
    total_ns = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue  # a thread that ended meanwhile
        total_ns += int(fields[0]) + int(fields[1])
    return total_ns / 1e9 if tasks else None
