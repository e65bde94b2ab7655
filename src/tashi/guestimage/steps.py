"""What every guest image build does the same way: one build at a time, timed steps, the kernel
sidecar, the ext4 root disk and the atomic commit of an image with its sidecars.

Used by ``tashi.guestimage.builder`` (the tiny guest) and ``tashi.guestimage.debian`` (the
Debian cloud-init guest). Both write their files in a scratch directory inside the output
directory and rename them into place, the image last, so that an image that is there has its
sidecars (``tashi.images.boot``) and its hidden bzImage; a hidden ``.<image>.recipe`` stamp then
says which recipe built it. Programs run through ``tashi.guestimage.commands``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Protocol, TypeVar

from tashi.domain.errors import BackendFailure
from tashi.guestimage import vmlinux
from tashi.guestimage.commands import run, run_both
from tashi.images import boot

Say = Callable[[str], None]
T = TypeVar("T")

BZIMAGE_SUFFIX = ".bzimage"


class Target(Protocol):
    """What ``build_once`` needs of a builder's options (``BuildOptions``, ``DebianOptions``)."""

    @property
    def out_dir(self) -> Path: ...

    @property
    def name(self) -> str: ...

    @property
    def force(self) -> bool: ...

    @property
    def image(self) -> Path: ...

    def is_current(self) -> bool: ...


def build_once(
    target: Target, before: Callable[[], None], work: Callable[[Path], T], say: Say
) -> tuple[T | None, float]:
    """Build ``target``'s image unless it is current and not forced: ``before()`` (what must
    hold for a build: its programs, its privileges), then ``work(scratch)`` under the image's
    lock, in a hidden scratch directory of the output directory that is removed afterwards.

    Returns what ``work`` returned (``None`` when nothing was built) and the seconds taken.
    Idempotent; a build another run finished while this one waited for the lock counts."""
    started = time.monotonic()
    if target.is_current() and not target.force:
        say(f"{target.image} is already built (use --force to rebuild)")
        return None, time.monotonic() - started
    before()
    target.out_dir.mkdir(parents=True, exist_ok=True)
    with locked(target.out_dir / f".{target.name}.lock"):
        if target.is_current() and not target.force:
            say(f"{target.image} was built meanwhile by another run")
            return None, time.monotonic() - started
        with tempfile.TemporaryDirectory(dir=target.out_dir, prefix=f".{target.name}.") as tmp:
            result = work(Path(tmp))
    total = time.monotonic() - started
    say(f"built {target.image} in {total:.1f} s")
    return result, total


def recipe_digest(options: str, modules: Iterable[ModuleType]) -> str:
    """A digest of a recipe: the options that decide an image's content, as text, and the text
    of the modules that do."""
    digest = hashlib.sha256(options.encode())
    for module in modules:
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def stamped(recipe_file: Path, recipe: str, files: Iterable[Path]) -> bool:
    """Whether every one of ``files`` exists and ``recipe_file`` holds ``recipe``."""
    try:
        stamp = recipe_file.read_text().strip()
    except FileNotFoundError:
        return False
    return stamp == recipe and all(path.is_file() for path in files)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block: one build of an
    image at a time, on this machine."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def step(say: Say, what: str) -> Iterator[None]:
    """Say ``what`` and how long the block took, once it is done."""
    started = time.monotonic()
    yield
    say(f"{what} ({time.monotonic() - started:.1f} s)")


def bzimage_path(image: Path) -> Path:
    """Where the kernel of ``image`` is kept as a bzImage: ``.<image>.bzimage``, hidden."""
    return image.with_name(f".{image.name}{BZIMAGE_SUFFIX}")


def outputs(image: Path) -> list[Path]:
    """The image, its three direct-boot sidecars and its hidden bzImage."""
    sidecars = [boot.sidecar(image, suffix) for suffix in boot.SIDECAR_SUFFIXES]
    return [image, *sidecars, bzimage_path(image)]


def write_kernel(vmlinuz: Path, out: Path, say: Say) -> None:
    """``out/kernel``: the ELF vmlinux if the bzImage ``vmlinuz`` holds one with a PVH entry
    (``tashi.guestimage.vmlinux``), else the bzImage itself (a hard link to ``out/bzimage``,
    which is always a copy of ``vmlinuz``)."""
    shutil.copyfile(vmlinuz, out / "bzimage")
    with step(say, "kernel: looked for a PVH entry point in the bzImage"):
        found = vmlinux.extract_pvh(out / "bzimage", out / "kernel")
    if found.ok:
        say(f"  .kernel: {found.why}, booted through PVH")
    else:
        say(f"  .kernel: the bzImage as it came ({found.why})")
        os.link(out / "bzimage", out / "kernel")


def ext4_qcow2(
    image: Path,
    tree: Path,
    work: Path,
    size_mb: int,
    *,
    label: str,
    options: Sequence[str] = (),
    epoch: int | None = None,
    compress: bool = False,
) -> None:
    """A qcow2 ``image`` holding one ext4 filesystem of ``size_mb`` MiB (no partition table)
    with the files of ``tree`` (``mke2fs -d``: no mount, no root needed).

    ``options`` go to mke2fs as they are. With ``epoch``, every time the filesystem holds is at
    most ``epoch``: its own (``E2FSPROGS_FAKE_TIME``, for mke2fs and debugfs), the files' times
    (clamped in ``tree`` just before mke2fs copies them: a file read after the clamp would
    have a new access time) and their change times, which no system call sets and mke2fs
    copies from ``tree``, rewritten with ``debugfs``. Then, with a fixed UUID and hash seed in
    ``options``, the same tree always gives the same bytes. With ``compress``, the qcow2's
    clusters are compressed with zstd (a third of the size for a Debian root filesystem; QEMU
    decompresses what the guest reads, and writes to an overlay or to new clusters)."""
    raw = work / "root.raw"
    with raw.open("wb") as handle:
        handle.truncate(size_mb * 1024 * 1024)
    mke2fs = ["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, *options]
    env = None if epoch is None else {"E2FSPROGS_FAKE_TIME": str(epoch)}
    if epoch is not None:
        clamp_times(tree, epoch)
    run([*mke2fs, "-d", tree, raw], env=env)
    if epoch is not None:
        commands = work / "ctimes.debugfs"
        commands.write_text("".join(_set_ctimes(tree, epoch)))
        # debugfs exits 0 whatever its commands did: its errors are the lines besides its banner
        # ("debugfs 1.47.0 (5-Feb-2023)") on its standard error.
        _, errors = run_both(["debugfs", "-w", "-f", commands, raw], env=env)
        failed = [
            line for line in errors.splitlines() if line.strip() and not line.startswith("debugfs ")
        ]
        if failed:
            raise BackendFailure(f"debugfs could not set every change time: {failed[:3]}")
    packed = ["-c", "-o", "compression_type=zstd"] if compress else []
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *packed, raw, image])
    raw.unlink()


def clamp_times(tree: Path, epoch: int) -> None:
    """Set the access and modification times of everything under ``tree`` (``tree`` too, not
    following links) that is newer than ``epoch`` to ``epoch``."""
    for directory, dirnames, filenames in os.walk(tree):
        for name in [*dirnames, *filenames, "."]:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if info.st_mtime > epoch or info.st_atime > epoch:
                os.utime(path, (epoch, min(info.st_mtime, epoch)), follow_symlinks=False)


def _set_ctimes(tree: Path, epoch: int) -> Iterator[str]:
    """debugfs commands setting the change time of every file of ``tree`` to ``epoch``."""
    yield f"sif / ctime @{epoch}\n"
    for directory, dirnames, filenames in os.walk(tree):
        for name in sorted([*dirnames, *filenames]):
            path = "/" + os.path.relpath(os.path.join(directory, name), tree)
            if '"' in path or "\n" in path:
                raise BackendFailure(f"debugfs cannot name {path!r}: rename it in the image")
            yield f'sif "{path}" ctime @{epoch}\n'


def commit(out: Path, image: Path, recipe_file: Path, recipe: str, say: Say) -> None:
    """Rename ``out/{bzimage,kernel,initrd,cmdline,image.qcow2}`` into place beside ``image``,
    the image last, then write the recipe stamp; say each file's size."""
    os.replace(out / "bzimage", bzimage_path(image))
    for suffix in boot.SIDECAR_SUFFIXES:
        os.replace(out / suffix.lstrip("."), boot.sidecar(image, suffix))
    os.replace(out / "image.qcow2", image)  # last: a present image has its sidecars
    recipe_file.write_text(recipe + "\n")
    for path in outputs(image):
        say(f"  {path} ({size(path)})")


def size(path: Path) -> str:
    """The size of ``path`` for a person: ``18.2 MiB``, ``130 bytes``."""
    value = path.stat().st_size
    if value >= 1024 * 1024:
        return f"{value / 1024 / 1024:.1f} MiB"
    return f"{value / 1024:.0f} KiB" if value >= 1024 else f"{value} bytes"
