"""Volumes' and snapshots' files in the shared store: ``<prefix>/volumes/<vol-id>.qcow2`` and
``<prefix>/snapshots/<snap-id>.qcow2`` (``domain/volumes.py``).

They live beside the image store's ``images/``, never in it: no user lists, copies, clones or
launches another's volume as an image, and a volume's name is its id (checked, never a path).
Every host mounts the prefix at the same path, so a volume is where a VM's node manager looks
for it (``disk_path``), on any host: it follows its VM when it migrates.

Each file is a standalone qcow2 (no backing file), made under a hidden name and linked under
its own when complete (``operations.part_of``), so a half-made one never appears:

* ``create``: an empty volume of a size (``qemu-img create``);
* ``restore``: a volume from a snapshot (``qemu-img convert``, then grown to its size);
* ``snapshot``: a copy of a volume (or of an instance's root disk) no VM writes meanwhile
  (``qemu-img convert`` under a shared image lock: ``locks.py``); a disk a running VM writes is
  copied by its node manager instead (``VmmDriver.backup_disk``) into ``snapshot_part``'s file,
  which ``place`` then names;
* ``remove``: under an exclusive image lock (no VM has the volume open), lock file and all (ids
  are never reused);
* ``grow``: ``qemu-img resize`` (an instance's root disk, at launch).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tashi.domain import volumes as rules
from tashi.domain.errors import AlreadyExists, BackendFailure, Dependency, InvalidInput, NotFound
from tashi.images import qemuimg
from tashi.images.locks import ImageLock, lock_file
from tashi.images.operations import flush, part_of, place
from tashi.images.store import ImageStore

VOLUMES = "volumes"
SNAPSHOTS = "snapshots"
GIB = 2**30
CREATE_TIMEOUT = 120.0  # seconds; a header, but a hung NFS never answers


def disk_path(store: ImageStore, uri: str) -> Path:
    """The file of an instance's disk: a volume's in ``volumes/``, else an image of the store
    (``ImageStore.path_of``, with its refusals). ``NotFound`` for a volume without a file."""
    volume_id = rules.volume_of(uri)
    if volume_id is None:
        return store.path_of(uri)
    path = VolumeFiles(store.prefix).volume(volume_id)
    if not path.is_file():
        raise NotFound(f"volume {volume_id} has no file in the store")
    return path


class VolumeFiles:
    """The volume and snapshot files under one store prefix. Methods that run ``qemu-img`` are
    coroutines (a child process); the others block briefly (call them in a thread)."""

    def __init__(self, prefix: Path, *, qemu_img: str = qemuimg.QEMU_IMG) -> None:
        self.prefix = prefix
        self.qemu_img = qemu_img

    def volume(self, volume_id: str) -> Path:
        if not rules.is_volume_id(volume_id):
            raise InvalidInput(f"{volume_id!r} is not a volume id")
        return self.prefix / VOLUMES / f"{volume_id}.qcow2"

    def snapshot(self, snapshot_id: str) -> Path:
        if not rules.is_snapshot_id(snapshot_id):
            raise InvalidInput(f"{snapshot_id!r} is not a snapshot id")
        return self.prefix / SNAPSHOTS / f"{snapshot_id}.qcow2"

    def snapshot_part(self, snapshot_id: str) -> Path:
        """Where a snapshot is written before ``place`` names it."""
        return part_of(self.snapshot(snapshot_id))

    async def create(self, volume_id: str, size_gib: int) -> None:
        path = self.volume(volume_id)
        part = await asyncio.to_thread(_fresh_part, path)
        args = ["create", "-q", "-f", "qcow2", str(part), f"{size_gib}G"]
        await self._run(args, part, CREATE_TIMEOUT)
        await asyncio.to_thread(place, part, path)

    async def restore(self, volume_id: str, snapshot_id: str, size_gib: int) -> None:
        path = self.volume(volume_id)
        source = self.snapshot(snapshot_id)
        if not source.is_file():
            raise NotFound(f"snapshot {snapshot_id} has no file in the store")
        part = await asyncio.to_thread(_fresh_part, path)
        convert = ["convert", "-q", "-f", "qcow2", "-O", "qcow2", str(source), str(part)]
        await self._run(convert, part, None)
        await self._run(["resize", "-q", "-f", "qcow2", str(part), f"{size_gib}G"], part, None)
        await asyncio.to_thread(place, part, path)

    async def snapshot_of(self, source: Path, snapshot_id: str) -> None:
        """Copy ``source`` (a disk no VM writes now) into the snapshot's file."""
        path = self.snapshot(snapshot_id)
        part = await asyncio.to_thread(_fresh_part, path)
        conflict = f"{source.name} is the disk of a running VM; try again"
        lock = await asyncio.to_thread(ImageLock.take, source, exclusive=False, conflict=conflict)
        try:
            fmt = await qemuimg.inspect(source, source.parent.resolve(), program=self.qemu_img)
            convert = ["convert", "-q", "-f", fmt, "-O", "qcow2", str(source), str(part)]
            await self._run(convert, part, None)
        finally:
            lock.release()
        await asyncio.to_thread(place, part, path)

    async def grow(self, path: Path, size_gib: int) -> None:
        """Make the disk ``path`` ``size_gib`` GiB (never smaller)."""
        fmt = await qemuimg.inspect(path, path.parent.resolve(), program=self.qemu_img)
        args = ["resize", "-q", "-f", fmt, str(path), f"{size_gib}G"]
        await qemuimg.run(args, program=self.qemu_img, timeout=CREATE_TIMEOUT)

    def remove_volume(self, volume_id: str) -> None:
        _remove(self.volume(volume_id), f"volume {volume_id} is in use by a VM")

    def remove_snapshot(self, snapshot_id: str) -> None:
        _remove(self.snapshot(snapshot_id), f"snapshot {snapshot_id} is being read")

    async def _run(self, args: list[str], part: Path, timeout: float | None) -> None:
        try:
            await qemuimg.run(args, program=self.qemu_img, timeout=timeout)
            await asyncio.to_thread(flush, part)
        except BaseException:
            part.unlink(missing_ok=True)
            raise


def _fresh_part(final: Path) -> Path:
    """The part file of ``final``, its directory made, an old attempt's removed."""
    try:
        final.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        part = part_of(final)
        part.unlink(missing_ok=True)
    except OSError as exc:
        raise BackendFailure(
            f"cannot write in {final.parent}: {exc.strerror}", failed=Dependency.file_system
        ) from exc
    if final.exists():
        raise AlreadyExists(f"{final.name} exists already")
    return part


def _remove(path: Path, conflict: str) -> None:
    if not path.exists():
        return
    with ImageLock.take(path, exclusive=True, conflict=conflict):
        try:
            path.unlink(missing_ok=True)
            lock_file(path).unlink(missing_ok=True)
        except OSError as exc:
            raise BackendFailure(
                f"cannot remove {path.name}: {exc.strerror}", failed=Dependency.file_system
            ) from exc
