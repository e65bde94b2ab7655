"""Writes an initramfs: a gzip-compressed cpio archive in the "newc" format the kernel unpacks.

Written here rather than with the ``cpio`` program so that the archive can hold what an unprivileged
build cannot create on disk: the ``/dev/console`` character device the kernel opens for init's
first output, and files owned by root whatever user runs the build. The output depends only on the
entries given (every mtime is fixed), so two builds of the same tree give the same bytes.

Used by ``tashi.guestimage.builder``; the format is the one of the kernel's
``Documentation/driver-api/early-userspace/buffer-format.rst``.
"""

from __future__ import annotations

import gzip
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


class Writer(Protocol):
    """Where an archive goes: an open binary file, a ``gzip.GzipFile``, an ``io.BytesIO``."""

    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """One archive member: ``name`` is relative (``bin/busybox``); ``mode`` has the type bits."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def directory(name: str, perm: int = 0o755) -> Entry:
    return Entry(name, stat.S_IFDIR | perm)


def regular(name: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG | perm, data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR | perm, rdev=(major, minor))


def entries_from_tree(root: Path) -> list[Entry]:
    """Every directory, regular file and symbolic link under ``root``, parents first, sorted."""
    found: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*dirnames, *sorted(filenames)]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            perm = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                found.append(symlink(rel, os.readlink(path)))
            elif stat.S_ISDIR(info.st_mode):
                found.append(directory(rel, perm))
            elif stat.S_ISREG(info.st_mode):
                found.append(regular(rel, path.read_bytes(), perm))
            else:
                raise ValueError(f"{path}: only directories, files and symlinks are archived")
    return sorted(found, key=lambda entry: entry.name)


def write(entries: list[Entry], out: Writer) -> None:
    """Write ``entries`` then the trailer as one uncompressed newc archive."""
    for ino, entry in enumerate(entries, start=1):
        _write_member(out, ino, entry)
    _write_member(out, 0, Entry(_TRAILER, 0))


def write_gzip(entries: list[Entry], path: Path) -> None:
    """Write ``entries`` as a gzip-compressed newc archive at ``path`` (mtime 0: reproducible)."""
    with path.open("wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as out:
        write(entries, out)


def _write_member(out: Writer, ino: int, entry: Entry) -> None:
    name = entry.name.encode() + b"\0"
    fields = (
        ino,
        entry.mode,
        0,  # uid: root
        0,  # gid: root
        2 if stat.S_ISDIR(entry.mode) else 1,  # nlink
        0,  # mtime
        len(entry.data),
        0,  # dev major
        0,  # dev minor
        entry.rdev[0],
        entry.rdev[1],
        len(name),
        0,  # check
    )
    header = _MAGIC + b"".join(b"%08X" % value for value in fields)
    out.write(header + name)
    out.write(b"\0" * _pad(len(header) + len(name)))
    out.write(entry.data)
    out.write(b"\0" * _pad(len(entry.data)))


def _pad(length: int) -> int:
    return (4 - length % 4) % 4
