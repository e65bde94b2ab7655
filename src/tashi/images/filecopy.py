"""A byte-identical file copy that keeps holes, can be stopped, and never follows a link.

Disk images are large and mostly sparse: a 20 GB raw image may hold 1 GB of data. ``copy_file``
copies only the data extents the file system reports (``SEEK_DATA``/``SEEK_HOLE``) with
``copy_file_range`` (in-kernel, a reflink on btrfs/XFS, server-side on NFS 4.2), falling back to
``pread``/``pwrite``, and sets the length so the holes stay holes. It runs in a worker thread
(``operations.py``) and checks ``stop`` between chunks so a stopped cluster manager does not
leave a copy running. The new file is created exclusively (``O_EXCL|O_NOFOLLOW``): never written
through a planted link. Errors are ``OSError``; the caller wraps them.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

CHUNK = 64 * 2**20  # bytes per system call: small enough to notice ``stop`` within a second
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


class Stopped(Exception):
    """``copy_file`` noticed ``stop`` and gave up (the partial file is the caller's to remove)."""


def copy_file(src: Path, dst: Path, stop: threading.Event) -> None:
    """Copy ``src`` to the new file ``dst`` (mode of ``src``), flushed to disk."""
    flags_in = os.O_RDONLY | os.O_CLOEXEC
    flags_out = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd_in = os.open(src, flags_in)
    try:
        info = os.fstat(fd_in)
        fd_out = os.open(dst, flags_out, info.st_mode & 0o777)
        try:
            for start, end in _extents(fd_in, info.st_size):
                _copy_range(fd_in, fd_out, start, end, stop)
            os.ftruncate(fd_out, info.st_size)
            os.fsync(fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each data region; the whole file where holes cannot be asked for."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            if offset == 0 and exc.errno == errno.EINVAL:  # no SEEK_DATA on this file system
                yield 0, size
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        offset = end


def _copy_range(fd_in: int, fd_out: int, start: int, end: int, stop: threading.Event) -> None:
    offset = start
    in_kernel = True
    while offset < end:
        if stop.is_set():
            raise Stopped
        count = min(CHUNK, end - offset)
        if in_kernel:
            try:
                done = os.copy_file_range(fd_in, fd_out, count, offset, offset)
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                in_kernel = False
                continue
        else:
            done = os.pwrite(fd_out, os.pread(fd_in, count, offset), offset)
        if done == 0:
            raise OSError(errno.EIO, f"the source ended at byte {offset} while being copied")
        offset += done
