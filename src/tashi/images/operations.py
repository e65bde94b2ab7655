"""copyImage, cloneImage, rebaseImage and removeImage in the shared image store.

Every name is an image name (``validation.image_name``: never a path), resolved inside
``<prefix>/images``; a source that is a link out of the store, or whose qcow2 backing chain
leaves it, is refused (the original joined user strings to the directory unchecked). A
destination is never overwritten: neither the image nor any of its direct-boot sidecars
(``boot.py``) may exist. The work is split in two so that refusals are immediate:

* ``plan`` checks everything, then takes a **shared** image lock on the source (``locks.py``:
  no VM opens it as a persistent disk meanwhile); it is quick, and a refusal changes nothing.
* ``make`` does the long part: the new image is written under a hidden name in the store
  (``.<dst>.tashi-part``, a dot file ``getImages`` never lists and no user can name), its
  sidecars likewise, all flushed; then the sidecars and, last, the image are linked under their
  names without replacing anything (``link``, a no-clobber rename). A half-written image never
  appears under its name, and a cluster manager killed mid-way leaves only dot files, which the
  next operation to that name (or ``sweep``) removes.

``copy`` is a byte-identical, hole-keeping copy in a worker thread (``filecopy.py``); ``clone``
is ``qemu-img create -f qcow2 -F <fmt> -b <absolute source>`` (an overlay: the source must then
stay); ``rebase`` is ``qemu-img convert -O qcow2`` (a standalone image, the chain flattened);
qemu-img runs as an asyncio child (``qemuimg.py``, the one qemu-img seam), so nothing blocks the
event loop. ``remove`` refuses an image another image of the store uses as its backing file and
one a VM holds locked. Whether instances name the image is the cluster manager's check
(``tashi.clustermanager.images.service``), which also decides who may do what.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from tashi.domain import validation
from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    Dependency,
    InvalidInput,
    InvalidState,
)
from tashi.domain.models import Image
from tashi.images import qcow2, qemuimg
from tashi.images.boot import SIDECAR_SUFFIXES, sidecar
from tashi.images.filecopy import Stopped, copy_file
from tashi.images.locks import ImageLock, lock_file
from tashi.images.store import ImageStore, backing_file, probe

log = logging.getLogger(__name__)

PART_SUFFIX = ".tashi-part"
CREATE_TIMEOUT = 120.0  # seconds; ``qemu-img create`` writes a header, a hung NFS never answers
MAX_NEW_NAME = 200  # room for ``.<name>.cmdline.tashi-part`` within a file name's 255 bytes
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


class Op(enum.Enum):
    """What a new image is made as, by the original verbs' names."""

    copy = "copy"  # copyImage: the same bytes
    clone = "clone"  # cloneImage: a qcow2 overlay backed by the source
    rebase = "rebase"  # rebaseImage: the source flattened into a standalone qcow2


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked operation, holding the shared lock on its source until ``make`` ends."""

    op: Op
    src_name: str
    dst_name: str
    src: Path  # the source file, resolved, inside the store
    dst: Path  # ``<images>/<dst_name>``, absent
    format: str  # the source's format, from qemu-img info
    sidecars: tuple[tuple[Path, Path], ...]  # (source sidecar, destination sidecar)
    lock: ImageLock = field(compare=False)


def part_of(path: Path) -> Path:
    """The hidden name ``path`` is written under until it is complete."""
    return path.with_name(f".{path.name}{PART_SUFFIX}")


class ImageOps:
    """The operations on one store. ``executor`` runs file copies (long; keep it small)."""

    def __init__(
        self, store: ImageStore, executor: Executor, *, qemu_img: str = qemuimg.QEMU_IMG
    ) -> None:
        self.store = store
        self._executor = executor
        self._qemu_img = qemu_img

    # --- checks -----------------------------------------------------------------------------

    async def plan(self, op: Op, src_name: str, dst_name: str) -> Plan:
        """Every refusal, before any work: ``InvalidInput`` (a path, a link or backing file out
        of the store), ``NotFound`` (no source), ``AlreadyExists`` (the destination or one of
        its sidecars), ``InvalidState`` (a VM writes the source)."""
        src, dst, sidecars = await asyncio.to_thread(self._check, src_name, dst_name)
        fmt = await qemuimg.inspect(src, self._root(), program=self._qemu_img)
        conflict = f"image {src_name!r} is the persistent disk of a running VM: try when it ends"
        lock = await asyncio.to_thread(ImageLock.take, src, exclusive=False, conflict=conflict)
        return Plan(op, src_name, dst_name, src, dst, fmt, sidecars, lock)

    def _root(self) -> Path:
        return self.store.images_dir.resolve()

    def _check(
        self, src_name: str, dst_name: str
    ) -> tuple[Path, Path, tuple[tuple[Path, Path], ...]]:
        validation.image_name(dst_name)
        if len(dst_name) > MAX_NEW_NAME:
            raise InvalidInput(f"a new image's name is limited to {MAX_NEW_NAME} characters")
        src = self.store.path_of(src_name)
        dst = self._root() / dst_name
        for path in (dst, *(sidecar(dst, s) for s in SIDECAR_SUFFIXES)):
            if os.path.lexists(path):
                raise AlreadyExists(_taken(dst_name, path.name))
        pairs = []
        for suffix in SIDECAR_SUFFIXES:
            found = sidecar(src, suffix)
            if os.path.lexists(found):
                pairs.append((self._inside(found), sidecar(dst, suffix)))
        return src, dst, tuple(pairs)

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if self._root() not in resolved.parents or not resolved.is_file():
            raise InvalidInput(f"{path.name!r} points outside the image store or is not a file")
        return resolved

    # --- the long part ----------------------------------------------------------------------

    async def make(self, plan: Plan) -> Image:
        """Write the new image and its sidecars, then give them their names; the new image."""
        outputs = [(part_of(d), d) for _, d in plan.sidecars] + [(part_of(plan.dst), plan.dst)]
        try:
            await asyncio.to_thread(_unlink_all, [p for p, _ in outputs])  # an old attempt's
            await self._write(plan, part_of(plan.dst))
            for src, dst in plan.sidecars:
                await self._copy(src, part_of(dst))
            await asyncio.to_thread(_place_all, outputs)
        finally:
            await asyncio.to_thread(_unlink_all, [p for p, _ in outputs])
            plan.lock.release()
        return await asyncio.to_thread(self.store.get, plan.dst_name)

    async def _write(self, plan: Plan, part: Path) -> None:
        if plan.op is Op.copy:
            await self._copy(plan.src, part)
            return
        if plan.op is Op.clone:
            args = ["create", "-q", "-f", "qcow2", "-F", plan.format, "-b", str(plan.src)]
            await qemuimg.run([*args, str(part)], program=self._qemu_img, timeout=CREATE_TIMEOUT)
        else:
            args = ["convert", "-q", "-f", plan.format, "-O", "qcow2", str(plan.src), str(part)]
            await qemuimg.run(args, program=self._qemu_img, timeout=None)
        try:
            await asyncio.to_thread(flush, part)
        except OSError as exc:
            message = f"cannot flush the new image {plan.dst_name!r}: {exc}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc

    async def _copy(self, src: Path, part: Path) -> None:
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, copy_file, src, part, stop)
        except asyncio.CancelledError:
            stop.set()  # the thread notices within one chunk; ``make`` removes the part file
            raise
        except (OSError, Stopped) as exc:
            message = f"copying {src.name!r} failed: {exc}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc

    def thin_clone(self, src_name: str, dst_name: str) -> Image:
        """A clone of ``src_name`` made in well under a millisecond, for an instance's own root
        disk (EC2's RunInstances): the qcow2 overlay ``qemu-img create -b`` would write, written
        directly (``qcow2.write_overlay``), and direct-boot files that are links to the
        source's (they are read, never written). Blocking. The refusals of ``plan``, and
        ``InvalidInput`` for a source ``write_overlay`` does not cover."""
        src, dst, sidecars = self._check(src_name, dst_name)
        fmt, size = probe(src)
        part = part_of(dst)
        try:
            if size is None or not qcow2.supports(src, fmt, size):
                raise InvalidInput(
                    f"image {src_name!r} ({fmt}, {size} bytes) cannot be cloned for an instance"
                )
            qcow2.write_overlay(src, fmt, size, part)
            for source, target in sidecars:
                os.symlink(os.path.relpath(source, target.parent), target)
            part.rename(dst)
        except BaseException:
            _unlink_all([part, *(t for _, t in sidecars)])
            raise
        return self.store.get(dst_name)

    # --- removal ----------------------------------------------------------------------------

    def remove(self, name: str, *, unique: bool = False) -> Image:
        """Remove image ``name`` and its sidecars; the image as it was. Blocking (call it in a
        thread). ``InvalidState`` if another image is backed by it or a VM holds it locked.

        ``unique``: the name can never come back (an instance's own copy, named by the
        instance's id, which is never reused), so its lock file goes too, unlinked under the
        exclusive lock; other lock files stay (``locks.py``: deleting one races with openers
        of an image that may be made again under the same name)."""
        image = self.store.get(name)
        entry = self.store.images_dir / name
        users = self.dependents(entry)
        if users:
            raise InvalidState(
                f"image {name!r} is the backing file of {', '.join(users)}: remove those"
                " first, or make them standalone with rebaseImage"
            )
        conflict = f"image {name!r} is in use by a running VM"
        with ImageLock.take(self.store.path_of(name), exclusive=True, conflict=conflict):
            _unlink_all([entry, *(sidecar(entry, s) for s in SIDECAR_SUFFIXES)], strict=True)
            if unique:
                lock_file(entry).unlink(missing_ok=True)
        _flush_dir(entry.parent)
        return image

    def dependents(self, entry: Path) -> list[str]:
        """Images of the store whose qcow2 backing file is ``entry`` (by name or, for a file
        that is not a link, by what it resolves to)."""
        target = None if entry.is_symlink() else entry.resolve()
        found = []
        for name, path in self.store.files():
            backing = backing_file(path)
            if backing is None or name == entry.name:
                continue
            named = Path(os.path.normpath(path.parent / backing))
            if named == entry or (target is not None and named.resolve() == target):
                found.append(name)
        return found

    def sweep(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove the hidden part files of unfinished operations, except those of ``keep``
        (destination names still being made); the names removed."""
        directory = self.store.images_dir
        kept = set()
        for name in keep:
            kept.add(part_of(directory / name).name)
            kept.update(part_of(sidecar(directory / name, s)).name for s in SIDECAR_SUFFIXES)
        try:
            names = os.listdir(directory)
        except OSError as exc:  # no store yet, or not readable: nothing of ours to remove
            log.warning("cannot look for unfinished images in %s: %s", directory, exc)
            return []
        stale = [n for n in names if n.startswith(".") and n.endswith(PART_SUFFIX)]
        stale = [n for n in stale if n not in kept]
        _unlink_all([directory / n for n in stale])
        return stale


def _taken(dst: str, found: str) -> str:
    if found == dst:
        return f"there is already an image {dst!r} in the image store; choose another name"
    return (
        f"{found!r} exists already in the image store (a direct-boot file left from an earlier"
        f" image {dst!r}?); an admin must remove it before {dst!r} can be made"
    )


def _place_all(outputs: list[tuple[Path, Path]]) -> None:
    """Give each part file its name, in order, replacing nothing; all or none."""
    placed: list[Path] = []
    try:
        for part, final in outputs:
            place(part, final)
            placed.append(final)
    except BaseException:
        _unlink_all(placed)
        raise
    if outputs:
        _flush_dir(outputs[-1][1].parent)


def place(part: Path, final: Path) -> None:
    try:
        os.link(part, final, follow_symlinks=False)
    except FileExistsError:
        raise AlreadyExists(_taken(final.name, final.name)) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            message = f"cannot name the new image {final.name!r}: {exc}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc
        _rename_if_free(part, final)  # a store without hard links
        return
    _unlink_all([part])


def _rename_if_free(part: Path, final: Path) -> None:
    """Check, then rename: a small race with writers outside Tashi, where links are missing."""
    if os.path.lexists(final):
        raise AlreadyExists(_taken(final.name, final.name))
    try:
        os.rename(part, final)
    except OSError as exc:
        message = f"cannot name the new image {final.name!r}: {exc}"
        raise BackendFailure(message, failed=Dependency.file_system) from exc


def _unlink_all(paths: Iterable[Path], *, strict: bool = False) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            if strict:
                message = f"cannot remove {path.name!r}: {exc.strerror}"
                raise BackendFailure(message, failed=Dependency.file_system) from exc
            log.warning("cannot remove %s: %s", path, exc)


def flush(path: Path) -> None:
    """Make a written file durable (``fsync``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush_dir(directory: Path) -> None:
    try:
        flush(directory)
    except OSError as exc:  # some network file systems refuse fsync on a directory
        log.debug("cannot flush %s: %s", directory, exc)
