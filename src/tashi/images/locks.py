"""Image locks of the shared store: OFD locks on ``.<image>.vmlock`` beside each image.

The convention of ``docs/adr/0007-host-networking-and-disks.md``: a VM's node manager holds an
**exclusive** lock on a persistent disk and a **shared** lock on an image used as a base, for as
long as the VM runs. The cluster manager's image operations take the same locks: a shared one
on the source of a copy, clone or rebase (no VM writes it meanwhile) and an exclusive one on an
image being removed (no VM uses it). OFD locks belong to an open file description, so they
conflict within one process as between hosts, and the kernel drops them when the holder dies.
Lock files are never deleted (deleting them would race with openers); the store never lists
them (dot files), nor can a user name an image so.

This module is the lock convention's home in the image package, which both managers import
(``tashi.nodemanager.disks`` for its VMs' disks, ``operations.py`` for image operations).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path
from types import TracebackType

from tashi.domain.errors import BackendFailure, Dependency, InvalidState

LOCK_SUFFIX = ".vmlock"


def lock_file(image: Path) -> Path:
    """``tashi-tiny.qcow2`` → ``.tashi-tiny.qcow2.vmlock``."""
    return image.with_name(f".{image.name}{LOCK_SUFFIX}")


class ImageLock:
    """A shared or exclusive OFD lock on an image's lock file; ``release()`` is idempotent."""

    __slots__ = ("_fd", "exclusive", "image")

    def __init__(self, image: Path, fd: int, exclusive: bool) -> None:
        self.image, self._fd, self.exclusive = image, fd, exclusive

    @classmethod
    def take(cls, image: Path, *, exclusive: bool, conflict: str | None = None) -> ImageLock:
        """Lock ``image`` now, or ``InvalidState`` when a conflicting lock is held (with the
        ``conflict`` message, by default one about VMs)."""
        path = lock_file(image)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            message = f"cannot open the lock file {path}: {exc.strerror}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc
        try:
            _ofd_lock(fd, fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise InvalidState(conflict or _conflict(image.name, exclusive)) from None
            message = f"cannot lock {path}: {exc.strerror}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc
        return cls(image, fd, exclusive)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the only descriptor of the description drops the OFD lock

    def __enter__(self) -> ImageLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def _ofd_lock(fd: int, kind: int) -> None:
    # struct flock on 64-bit Linux: l_type, l_whence, (pad), l_start, l_len, l_pid, (pad).
    # l_start = l_len = 0: the whole file; l_pid must be 0 for OFD locks.
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0))


def _conflict(name: str, exclusive: bool) -> str:
    if exclusive:
        return (
            f"image {name!r} is in use by another VM: a persistent image is only ever opened by"
            " one VM, and not while other VMs use it as their base"
        )
    return f"image {name!r} is open as a persistent disk of another VM: it cannot be a base now"
