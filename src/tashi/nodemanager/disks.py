"""A VM's disks, made ready for the hypervisor: overlays, persistent-image locks, direct boot.

For each ``DiskConfig`` of an instance the image is found in the shared store
(``ImageStore.path_of`` refuses paths, ``../`` and links that leave the store), inspected (its
format, and a backing chain that must stay inside the store: a plain qcow2 chain read from its
headers, ``tashi.images.qcow2chain``, anything else by ``qemu-img info``), and then

* **non-persistent**: a qcow2 overlay ``<scratchDir>/<instanceId>/disk<i>.qcow2`` backed by the
  image (absolute path, its format recorded) takes the VM's writes; it is written directly
  (``tashi.images.qcow2``, the bytes ``qemu-img create`` writes) or by ``qemu-img create`` for
  what that module does not write, and is deleted when the VM ends.
  The image itself gets a **shared** lock, so that no VM writes an image that others read as
  their base;
* **persistent**: the VM writes the image itself, under an **exclusive** lock, so no two VMs ever
  open one persistent image (the original had no such guard, and concurrent writers corrupted
  images). Its ``DiskSpec`` is ``shared``: every host sees it at the same path, so suspend and
  migration leave it in place, while an overlay travels with the VM.

The first disk's direct-boot sidecars (``tashi.images.boot``) give the ``BootSpec``.

A **volume** (``domain/volumes.py``: a disk ``volume:<id>``, its file in ``<prefix>/volumes``,
``tashi.images.volumes.disk_path``) is a persistent disk like the others, whose ``DiskSpec``
carries its attachment point. One can join a running VM's disks (``PreparedDisks.plug``, for a
hot-plug) and leave them (``unplug``), its lock with it.

A **migration target** (``prepare(..., incoming=True)``) opens the same persistent files as its
source, which holds their exclusive locks until it has sent itself: they are inspected with
shared reads only, and ``PreparedDisks.settle`` takes their locks once the VM has arrived and
its source is gone.

Locks are OFD locks (``F_OFD_SETLK``) on ``.<image>.vmlock`` beside the image in the shared store:
held by an open file description, so two VMs of one node manager conflict like two hosts do, and
released by the kernel when the holder dies, so a crash never leaves a stale lock. They are held by
the node manager while the VM runs; ``PreparedDisks.release()`` drops them. If the node manager is
SIGKILLed its locks go with it, and QEMU's own OFD locks on the image file (a writer unshares
writes; a backing file refuses writers) guard the image until the node manager, started again,
``adopt``s its VMs and re-takes the locks. See ``docs/adr/0007-host-networking-and-disks.md``.

The methods block (``qemu-img`` runs as a child, argv list, never a shell); the node service calls
them through ``asyncio.to_thread``. Failures are ``tashi.domain.errors`` categories, ``qemu-img``'s
own message included.
"""

from __future__ import annotations

import errno
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    Dependency,
    InvalidInput,
    InvalidState,
    TashiError,
)
from tashi.domain.ids import InstanceId
from tashi.domain.models import DiskConfig
from tashi.domain.volumes import device_index
from tashi.images import qcow2, qcow2chain
from tashi.images.boot import direct_boot_of
from tashi.images.locks import ImageLock
from tashi.images.qemuimg import ChainTop, chain_top
from tashi.images.store import ImageStore
from tashi.images.volumes import VOLUMES, disk_path
from tashi.vmm.base import BootSpec, DiskSpec

log = logging.getLogger(__name__)

QEMU_IMG_TIMEOUT = 120.0  # seconds; creating an overlay takes milliseconds, a hung NFS does not


class PreparedDisks:
    """The disks of one VM as the hypervisor opens them, and what to undo when it ends."""

    def __init__(
        self,
        instance_id: InstanceId,
        disks: Sequence[DiskSpec],
        boot: BootSpec,
        overlays: Sequence[Path],
        locks: Sequence[ImageLock],
        problems: Sequence[str] = (),
        *,
        manager: DiskManager | None = None,
        pending: Sequence[Path] = (),
    ) -> None:
        self.instance_id = instance_id
        self.disks = tuple(disks)
        self.boot = boot
        self.overlays = tuple(overlays)
        self.locks = tuple(locks)
        self.problems = tuple(problems)  # what ``adopt`` could not take back (logged too)
        self.pending = tuple(pending)  # persistent files a migration target locks at ``settle``
        self._manager = manager

    def settle(self) -> list[str]:
        """Take the exclusive locks a migration target's persistent disks wait for (its source
        has gone); what could not be taken (logged: QEMU's own locks still guard the files)."""
        problems = []
        for image in self.pending:
            try:
                self.locks = (*self.locks, ImageLock.take(image, exclusive=True))
            except TashiError as exc:
                problems.append(f"{image.name}: {exc.message}")
                log.error("instance %s: %s", self.instance_id, problems[-1])
        self.pending = ()
        return problems

    def plug(self, disk: DiskConfig) -> DiskSpec:
        """One more persistent disk (a volume being hot-plugged): resolved, locked exclusively
        and inspected as ``prepare`` does; kept with these disks until ``unplug`` or
        ``release``. The errors of ``prepare``; on failure nothing is kept."""
        if self._manager is None:
            raise InvalidState(f"instance {self.instance_id}: its disks take no more")
        spec, lock = self._manager.plug(disk)
        if any(d.path == spec.path for d in self.disks):
            lock.release()
            raise AlreadyExists(f"instance {self.instance_id} has {disk.uri} already")
        self.disks, self.locks = (*self.disks, spec), (*self.locks, lock)
        return spec

    def unplug(self, path: Path) -> None:
        """Forget the persistent disk ``path`` (hot-unplugged) and drop its lock. Idempotent."""
        for lock in self.locks:
            if lock.image == path:
                lock.release()
        self.locks = tuple(lock for lock in self.locks if lock.image != path)
        self.disks = tuple(disk for disk in self.disks if disk.path != path)

    def release(self) -> None:
        """Drop the locks, delete the overlays (and their directory once empty). Idempotent;
        a file that cannot be deleted is reported after everything else was done."""
        for lock in self.locks:
            lock.release()
        failed = []
        for overlay in self.overlays:
            try:
                overlay.unlink(missing_ok=True)
            except OSError as exc:
                failed.append(f"{overlay}: {exc.strerror}")
        for directory in {overlay.parent for overlay in self.overlays}:
            _remove_empty(directory)
        if failed:
            raise BackendFailure(
                f"cannot delete overlays of instance {self.instance_id}: {failed}",
                failed=Dependency.file_system,
            )


class DiskManager:
    """Prepares and takes back the disks of this host's VMs (the node service's ``disks``)."""

    def __init__(self, store: ImageStore, scratch_dir: Path, *, qemu_img: str = "qemu-img") -> None:
        self.store = store
        self.scratch_dir = scratch_dir
        self.qemu_img = qemu_img

    def overlay_dir(self, instance_id: InstanceId) -> Path:
        return self.scratch_dir / str(int(instance_id))

    def prepare(
        self, instance_id: InstanceId, disks: Sequence[DiskConfig], *, incoming: bool = False
    ) -> PreparedDisks:
        """Make fresh overlays and take the locks for a VM about to start (``incoming``: a
        migration target, whose persistent disks are locked at ``settle``). On any failure
        everything done so far is undone before the error is raised."""
        images = self._resolve(disks)
        specs: list[DiskSpec] = []
        overlays: list[Path] = []
        locks: list[ImageLock] = []
        pending: list[Path] = []
        try:
            for index, (disk, image) in enumerate(zip(disks, images, strict=True)):
                if disk.persistent and incoming:
                    pending.append(image)
                    specs.append(_persistent(disk, image, self._inspect(image, running=True)))
                    continue
                locks.append(ImageLock.take(image, exclusive=disk.persistent))
                top = self._inspect(image)
                if disk.persistent:
                    specs.append(_persistent(disk, image, top))
                    continue
                overlays.append(self._overlay(instance_id, index))
                self._create_overlay(image, top, overlays[-1])
                specs.append(DiskSpec(path=overlays[-1], format="qcow2"))
        except BaseException:
            _quietly_release(PreparedDisks(instance_id, (), BootSpec(), overlays, locks))
            raise
        boot = _boot(images[0]) if images else BootSpec()
        return PreparedDisks(
            instance_id, specs, boot, overlays, locks, manager=self, pending=pending
        )

    def plug(self, disk: DiskConfig) -> tuple[DiskSpec, ImageLock]:
        """A persistent disk for a running VM (``PreparedDisks.plug``), and its lock."""
        if not disk.persistent:
            raise InvalidInput(f"{disk.uri}: only a persistent disk can be added to a VM")
        [image] = self._resolve([disk])
        lock = ImageLock.take(image, exclusive=True)
        try:
            return _persistent(disk, image, self._inspect(image)), lock
        except BaseException:
            lock.release()
            raise

    def blank_like(self, source: Path, target: Path) -> None:
        """An empty qcow2 ``target`` of the virtual size of ``source``, a disk a VM of this
        host runs with (the target of ``VmmDriver.backup_disk``)."""
        size = self._inspect(source, running=True).size
        target.parent.mkdir(parents=True, exist_ok=True)
        self._qemu_img("create", "-q", "-f", "qcow2", str(target), str(size))

    def adopt(self, instance_id: InstanceId, disks: Sequence[DiskConfig]) -> PreparedDisks:
        """Take back the disks of a VM that kept running across a node-manager restart: keep
        its overlays, re-take its locks. Never raises for what the running VM already has:
        a lock that cannot be re-taken or a missing overlay is logged and kept in
        ``problems``, and the VM runs on (QEMU's own image locks still guard it)."""
        specs: list[DiskSpec] = []
        locks: list[ImageLock] = []
        problems: list[str] = []
        images: list[Path | None] = []
        for index, disk in enumerate(disks):
            image, problem = self._relock(disk, locks)
            images.append(image)
            if problem is not None:
                problems.append(f"disk {index} ({disk.uri}): {problem}")
            if disk.persistent:
                fmt = self._format_or_raw(image) if image is not None else "raw"
                path = image if image is not None else self.store.images_dir / disk.uri
                specs.append(DiskSpec(path, fmt, shared=True, volume=_volume_index(disk)))
                continue
            overlay = self.overlay_dir(instance_id) / f"disk{index}.qcow2"
            if not overlay.is_file():
                problems.append(f"disk {index} ({disk.uri}): its overlay {overlay} is missing")
            specs.append(DiskSpec(path=overlay, format="qcow2"))
        for problem in problems:
            log.error("instance %s: adopting its disks: %s", instance_id, problem)
        boot = _boot(images[0]) if images and images[0] is not None else BootSpec()
        overlays = [
            spec.path for spec, disk in zip(specs, disks, strict=True) if not disk.persistent
        ]
        return PreparedDisks(instance_id, specs, boot, overlays, locks, problems, manager=self)

    def _relock(self, disk: DiskConfig, locks: list[ImageLock]) -> tuple[Path | None, str | None]:
        """The image of a running VM's disk and its lock again (appended to ``locks``), with
        what went wrong: the image may have been renamed or deleted while the VM ran (its last
        known place is then all there is), or someone else holds the lock."""
        try:
            image = disk_path(self.store, disk.uri)
        except TashiError as exc:
            return None, exc.message
        try:
            locks.append(ImageLock.take(image, exclusive=disk.persistent))
        except TashiError as exc:
            return image, exc.message
        return image, None

    def discard(self, instance_id: InstanceId) -> None:
        """Delete the overlays an instance left behind (its VM is gone and nothing holds a
        ``PreparedDisks`` for it: after a crash, or a VM that died while the node manager was
        down). Idempotent."""
        directory = self.overlay_dir(instance_id)
        if directory.is_dir():
            overlays = sorted(directory.glob("disk*.qcow2"))
            PreparedDisks(instance_id, (), BootSpec(), overlays, ()).release()
            _remove_empty(directory)

    def leftovers(self) -> list[InstanceId]:
        """Instances that have an overlay directory in ``scratchDir``."""
        try:
            entries = list(self.scratch_dir.iterdir())
        except FileNotFoundError:
            return []
        return sorted(InstanceId(int(p.name)) for p in entries if p.is_dir() and p.name.isdigit())

    # --- the parts -------------------------------------------------------------------

    def _resolve(self, disks: Sequence[DiskConfig]) -> list[Path]:
        """Every image, before anything is made: a bad name fails the whole VM at once."""
        images = [disk_path(self.store, disk.uri) for disk in disks]
        for disk, image in zip(disks, images, strict=True):
            if disk.persistent and images.count(image) > 1:
                raise InvalidInput(
                    f"image {disk.uri!r} is a persistent disk of this VM and also another of"
                    " its disks: a persistent image can only be opened once"
                )
        return images

    def _overlay(self, instance_id: InstanceId, index: int) -> Path:
        directory = self.overlay_dir(instance_id)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            message = f"cannot make the overlay directory {directory}: {exc}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc
        overlay = directory / f"disk{index}.qcow2"
        try:
            overlay.unlink(missing_ok=True)  # a leftover of an earlier attempt: start afresh
        except OSError as exc:
            message = f"cannot replace the old overlay {overlay}: {exc}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc
        return overlay

    def _inspect(self, image: Path, *, running: bool = False) -> ChainTop:
        """The image's format and virtual size; refuses a backing chain that leaves the image
        store (a raw disk a guest rewrote as a qcow2 header pointing at a host file must never
        be opened).

        Unless the image belongs to a VM already ``running``, this also asks QEMU's own image
        locks: an image some QEMU process writes (started by anyone) is refused here, with a
        clear message, rather than by the hypervisor later.

        A plain qcow2 chain is read from its headers (``tashi.images.qcow2chain``, the same
        answer and the same lock test); anything else, or a layer some QEMU locks, is left to
        ``qemu-img info``, whose words the errors carry."""
        root = self._root_of(image)
        read = qcow2chain.read_top(image, root, check_locks=not running)
        if read is not None:
            return read
        share = ["--force-share"] if running else []
        try:
            out = self._qemu_img("info", "--output=json", *share, "--backing-chain", str(image))
        except BackendFailure as exc:
            if running or "lock" not in exc.message:
                raise
            # qemu-img's words name the image's path: the log has them, the caller the name
            log.info("image %s is locked: %s", image.name, exc.message)
            raise InvalidState(f"image {image.name!r} is in use by another QEMU process") from None
        return chain_top(out, image.name, root)

    def _root_of(self, image: Path) -> Path:
        """Where the backing chain of ``image`` must stay: its volume's directory or the store."""
        volumes = (self.store.prefix / VOLUMES).resolve()
        return volumes if volumes in image.resolve().parents else self.store.images_dir.resolve()

    def _format_or_raw(self, image: Path) -> str:
        try:
            return self._inspect(image, running=True).format
        except TashiError as exc:
            log.warning("cannot inspect %s (%s); reporting it as raw", image, exc.message)
            return "raw"

    def _create_overlay(self, image: Path, top: ChainTop, overlay: Path) -> None:
        """The overlay ``qemu-img create`` would make, written directly when ``qcow2`` can
        (``tashi.images.qcow2``: the same bytes, without a 10 ms child process)."""
        backing = image.absolute()
        if not qcow2.supports(backing, top.format, top.size):
            self._qemu_img(
                "create", "-q", "-f", "qcow2", "-F", top.format, "-b", str(backing), str(overlay)
            )
            return
        try:
            qcow2.write_overlay(backing, top.format, top.size, overlay)
        except OSError as exc:
            message = f"cannot write the overlay {overlay}: {exc}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc

    def _qemu_img(self, *args: str) -> str:
        argv = [self.qemu_img, *args]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            message = f"{self.qemu_img} {args[0]} could not run: {exc}"
            raise BackendFailure(message, failed=Dependency.subprocess) from exc
        if done.returncode != 0:
            message = done.stderr.strip() or f"exit status {done.returncode}"
            raise BackendFailure(
                f"qemu-img {args[0]} failed: {message}", failed=Dependency.subprocess
            )
        return done.stdout


def _volume_index(disk: DiskConfig) -> int | None:
    return None if disk.device is None else device_index(disk.device)


def _persistent(disk: DiskConfig, image: Path, top: ChainTop) -> DiskSpec:
    return DiskSpec(path=image, format=top.format, shared=True, volume=_volume_index(disk))


def _boot(image: Path) -> BootSpec:
    direct = direct_boot_of(image)
    if direct is None:
        return BootSpec()
    return BootSpec(kernel=direct.kernel, initrd=direct.initrd, cmdline=direct.cmdline)


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            log.warning("cannot remove %s: %s", directory, exc.strerror)


def _quietly_release(prepared: PreparedDisks) -> None:
    try:
        prepared.release()
    except BackendFailure as exc:  # the original error matters more; this one is logged
        log.error("undoing a failed disk preparation: %s", exc.message)
