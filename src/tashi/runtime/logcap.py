"""Log files that stay bounded: past a size cap, one old copy and the file emptied in place.

Every log Tashi makes a process write is a file that process appends to: the node manager's VMs'
serial consoles (qemu's ``append=on``), qemu's own messages (``-D``), the watchdog's output, and
in ``tashi-cluster`` the daemons' standard error and dnsmasq's ``--log-facility`` file. None of
those writers rotates anything, so they are capped from outside (logrotate's "copytruncate"):
once a file holds more than ``limit`` bytes its content (the newest ``limit`` bytes of it, from
a line's start) is copied to ``<name>.1``, replacing the copy before, and the file is emptied
where it is. Nothing is signalled or reopened, so one
mechanism serves every writer. (dnsmasq could reopen its file on SIGUSR2 after a rename, but its
TCP children keep writing to the old one for up to 150 s, and the capper would need its pid.)

Two details make emptying in place safe:

* A writer that opened its file with ``O_APPEND`` (dnsmasq, qemu's console, every daemon log of
  ``tashi-cluster``, the watchdog's) writes its next line at the new end, offset 0.
* qemu opens its ``-D`` log without ``O_APPEND`` and writes on at its old offset: the file then
  begins with a hole, which takes no disk and reads as NULs. So a file's size here is what it
  holds (its allocated blocks, when fewer than its length), and the copy starts at its first
  data (``SEEK_DATA``, then past the NULs of the hole's last block).

A line written between the copy and the emptying is lost. A log takes at most twice the cap on
disk, plus what its writer adds between two passes (every ``INTERVAL`` seconds).
``LogCap`` is the pass the node manager runs as a supervised task over its state directory, and
``tashi-cluster``'s keeper over the cluster's (``devcluster/logkeeper.py``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

INTERVAL = 10.0  # seconds between two passes
SUFFIX = ".log"
OLD = ".1"  # the one copy kept: <name>.1
CHUNK = 1 << 20


def held(path: Path) -> int:
    """Bytes the file holds: its length, or its allocated blocks when it has holes."""
    st = path.stat()
    return min(st.st_size, st.st_blocks * 512)


def cap(path: Path, limit: int) -> bool:
    """Move ``path``'s newest ``limit`` bytes (from a line's start) to ``<path>.1`` and empty
    it when it holds more than ``limit`` bytes; whether it did. It is emptied even when the
    copy fails (a full disk, say: then the error is raised after). A file that is gone
    meanwhile is nothing to cap."""
    try:
        if held(path) <= limit:
            return False
        try:
            _copy(path, path.with_name(path.name + OLD), limit)
        finally:
            os.truncate(path, 0)
    except FileNotFoundError:
        return False
    return True


def _copy(path: Path, old: Path, limit: int) -> None:
    new = old.with_name(old.name + ".new")
    try:
        with path.open("rb") as source, new.open("wb") as copy:
            copy.write(_head(source, limit))
            shutil.copyfileobj(source, copy, CHUNK)
        os.replace(new, old)
    except OSError:
        new.unlink(missing_ok=True)
        raise


def _head(source: BinaryIO, limit: int) -> bytes:
    """The first chunk of what is kept of ``source``, read: from its newest ``limit`` bytes,
    past the NULs of a leading hole's last block, less the end of a line they cut (when a
    line ends in the chunk)."""
    first = _first_data(source.fileno())
    start = max(first, os.fstat(source.fileno()).st_size - limit)
    source.seek(start - 1 if start > first else start)
    cut = start > first and source.read(1) not in (b"\n", b"\0")  # inside a line
    head = source.read(CHUNK).lstrip(b"\0")
    return head.partition(b"\n")[2] if cut and b"\n" in head else head


def _first_data(fd: int) -> int:
    """Where the file's data begins (after a leading hole); its end when it has none."""
    try:
        return os.lseek(fd, 0, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: no data at all
            raise
        return os.lseek(fd, 0, os.SEEK_END)


def logs_under(root: Path, skip: Callable[[Path], bool]) -> Iterator[Path]:
    """The ``*.log`` files under ``root``, not looking into directories ``skip`` names."""
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = [d for d in dirs if not skip(here / d)]
        logs = (here / f for f in files if f.endswith(SUFFIX))
        yield from (path for path in logs if not path.is_symlink())


class LogCap:
    """Every ``*.log`` file under ``roots`` kept to ``limit`` bytes (see the module doc).
    ``check`` is one pass, off the event loop; a file it fails to cap is logged and looked at
    again at the next pass."""

    def __init__(
        self, roots: Sequence[Path], limit: int, skip: Callable[[Path], bool] = lambda _: False
    ) -> None:
        self.roots, self.limit, self._skip = list(roots), limit, skip

    async def check(self) -> list[Path]:
        return await asyncio.to_thread(self.run)

    def run(self) -> list[Path]:
        """One pass; the files it capped."""
        capped = []
        for root in self.roots:
            for path in logs_under(root, self._skip):
                try:
                    if cap(path, self.limit):
                        capped.append(path)
                except OSError as exc:
                    log.warning("capping the log %s failed: %s", path, exc)
        return capped
