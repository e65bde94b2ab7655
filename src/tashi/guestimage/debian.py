"""Builds Tashi's Debian guest, with cloud-init and OpenSSH, from Debian's packages with
mmdebstrap: ``tashi-image debian``.

Output, in an image store directory (``<prefix>/images``), for ``--name tashi-debian``::

    tashi-debian.qcow2             root disk: one ext4 filesystem of 1 GiB, no partition table,
                                   in a qcow2 with zstd-compressed clusters
    tashi-debian.qcow2.kernel      the image's own linux-image-cloud-amd64, as an ELF vmlinux (PVH)
    tashi-debian.qcow2.initrd      the initramfs the image's initramfs-tools made for it
    tashi-debian.qcow2.cmdline     debianfiles.CMDLINE (console=ttyS0 root=/dev/vda rw ...)
    .tashi-debian.qcow2.bzimage    the same kernel as a bzImage, for bootloaders (hidden)
    .tashi-debian.qcow2.manifest   every package in the image and its version (hidden)

It boots directly, like the tiny guest (``tashi.images.boot``): SeaBIOS and a bootloader would
only add seconds of emulated CPU to find the kernel the sidecars already name. What the guest
holds and why is in ``tashi.guestimage.debianfiles`` and ``docs/guest-image.md``.

mmdebstrap installs the packages in root mode (chroot, with /proc, /sys and /dev mounted in the
root filesystem), so the build needs root; it runs in its own mount and PID namespaces
(``unshare``), which take its mounts and any process a package leaves behind with them. The
.deb files are kept in ``.cache/debian`` beside the output and handed back to mmdebstrap, so a
later build downloads only the package lists and what changed. The build is reproducible:
``SOURCE_DATE_EPOCH`` is fixed, every file time is clamped to it, the filesystem's UUID, hash
seed and times are fixed, and what differs from run to run is removed. The same archive state
gives the same image; the manifest says which state it was. Files are written in a hidden
scratch directory and renamed into place, the image last; the ``.<image>.recipe`` stamp holds a
digest of the modules that define the guest, so an image built by another recipe is rebuilt
without ``--force``.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tashi.domain import validation
from tashi.domain.errors import BackendFailure
from tashi.guestimage import debianfiles, rootfs, steps, vmlinux
from tashi.guestimage.builder import BuildResult
from tashi.guestimage.commands import require, run_logged
from tashi.guestimage.steps import Say, step

DEFAULT_NAME = "tashi-debian"
# About 430 MiB are used; the rest is room for what a user installs.
DEFAULT_SIZE_MB = 1024
MANIFEST_SUFFIX = ".manifest"

REQUIRED_PROGRAMS = ("mmdebstrap", "unshare", "mke2fs", "debugfs", "qemu-img", "lz4")
# A cold build downloads about 100 MB and takes about 2 minutes here.
MMDEBSTRAP_TIMEOUT = 1800.0

MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"

# The root filesystem's identity, fixed so that two builds of the same packages are identical.
FS_UUID = "6a7e1d2c-7a53-4c1b-9f1e-7461736869de"
FS_HASH_SEED = "3b0d2a4e-1f6c-4e8a-8d7b-7461736869de"
FS_LABEL = "tashi-root"

_RECIPE_MODULES = (sys.modules[__name__], debianfiles, rootfs, steps, vmlinux)


@dataclass(frozen=True, slots=True)
class DebianOptions:
    out_dir: Path
    name: str = DEFAULT_NAME
    force: bool = False
    cache_dir: Path | None = None
    size_mb: int = DEFAULT_SIZE_MB

    def __post_init__(self) -> None:
        validation.image_name(f"{self.name}.qcow2")  # InvalidInput for "../x", "a/b", ...

    @property
    def image(self) -> Path:
        return self.out_dir / f"{self.name}.qcow2"

    @property
    def cache(self) -> Path:
        return self.cache_dir or self.out_dir / ".cache" / "debian"

    @property
    def recipe_file(self) -> Path:
        return self.out_dir / f".{self.image.name}.recipe"

    @property
    def manifest(self) -> Path:
        return self.out_dir / f".{self.image.name}{MANIFEST_SUFFIX}"

    @property
    def log(self) -> Path:
        """mmdebstrap's output, kept after the build (and after a failure)."""
        return self.out_dir / f".{self.image.name}.log"

    def recipe(self) -> str:
        """A digest of what decides the image's content: the recipe modules and the options."""
        return steps.recipe_digest(f"{self.size_mb}", _RECIPE_MODULES)

    def is_current(self) -> bool:
        """Whether the image, its sidecars and manifest exist and were built by this recipe."""
        files = [*steps.outputs(self.image), self.manifest]
        return steps.stamped(self.recipe_file, self.recipe(), files)


def build(options: DebianOptions, say: Say = print) -> BuildResult:
    """Build the image unless it is already current (or ``force``); idempotent.

    Raises ``BackendFailure`` when not run as root, or when a tool is missing or fails."""

    def before() -> None:
        if os.geteuid() != 0:
            raise BackendFailure(
                "the Debian image is built by mmdebstrap in root mode: run as root"
            )
        for program in REQUIRED_PROGRAMS:
            require(program)

    def work(scratch: Path) -> str:
        return _Build(options, scratch, say).run()

    version, seconds = steps.build_once(options, before, work, say)
    return BuildResult(options.image, version is not None, seconds, version or "")


@dataclass(slots=True)
class _Build:
    """One build in a scratch directory ``work`` (inside the output directory)."""

    options: DebianOptions
    work: Path
    say: Say

    def run(self) -> str:
        root = self.work / "rootfs"
        out = self.work / "out"
        out.mkdir()
        with step(self.say, f"mmdebstrap: Debian {debianfiles.SUITE} (log: {self.options.log})"):
            self._mmdebstrap(root)
        with step(self.say, "root filesystem: Tashi's files, masked timers"):
            packages = rootfs.finish(root)
        rootfs.prune_cache(self.options.cache, packages)
        (out / "manifest").write_text("".join(f"{p.line()}\n" for p in packages))
        kernel = next((p for p in packages if p.name.startswith("linux-image-6")), None)
        self.say(f"  {len(packages)} packages; kernel {kernel.line() if kernel else '?'}")
        vmlinuz, initrd = rootfs.boot_files(root)
        steps.write_kernel(vmlinuz, out, self.say)
        shutil.copyfile(initrd, out / "initrd")
        (out / "cmdline").write_text(debianfiles.CMDLINE + "\n")
        with step(self.say, f"root disk: ext4 of {self.options.size_mb} MiB, as qcow2"):
            self._root_disk(root, out / "image.qcow2")
        os.replace(out / "manifest", self.options.manifest)
        options = self.options
        steps.commit(out, options.image, options.recipe_file, options.recipe(), self.say)
        return vmlinuz.name.removeprefix("vmlinuz-")

    def _mmdebstrap(self, root: Path) -> None:
        setup = self.work / "setup"
        for relative, text in debianfiles.SETUP_FILES.items():
            path = setup / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.options.cache.mkdir(parents=True, exist_ok=True)
        argv = mmdebstrap_argv(root, self.options.cache, setup)
        epoch = str(debianfiles.SOURCE_DATE_EPOCH)

        def tick(elapsed: float) -> None:
            self.say(f"  mmdebstrap: still running after {elapsed:.0f} s")

        run_logged(
            argv,
            self.options.log,
            env={"SOURCE_DATE_EPOCH": epoch},
            timeout=MMDEBSTRAP_TIMEOUT,
            tick=tick,
        )

    def _root_disk(self, root: Path, image: Path) -> None:
        fixed = ["-U", FS_UUID, "-E", f"hash_seed={FS_HASH_SEED}"]
        epoch = debianfiles.SOURCE_DATE_EPOCH
        size_mb = self.options.size_mb
        steps.ext4_qcow2(
            image,
            root,
            self.work,
            size_mb,
            label=FS_LABEL,
            options=fixed,
            epoch=epoch,
            compress=True,
        )


def mmdebstrap_argv(root: Path, cache: Path, setup: Path) -> list[str]:
    """The command that installs the guest's packages into the new directory ``root``.

    In a mount and PID namespace of its own; the .deb files of ``cache`` are offered to apt and
    the ones it used are copied back; the files of ``setup`` are in place before any package."""
    unshare = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork"]
    argv = [*unshare, "--kill-child", "mmdebstrap", "--mode=root", "--variant=apt"]
    argv += ["--format=directory", "--include=" + ",".join(debianfiles.PACKAGES)]
    # /bin -> usr/bin and the others as links, and usr-is-merged: not the usrmerge package,
    # which converts a system at install time and needs perl (50 MB) to do it.
    argv += [f"--hook-dir={MERGED_USR_HOOKS}"]
    argv += [f"--dpkgopt={option}" for option in debianfiles.DPKG_OPTIONS]
    argv += ["--skip=essential/unlink"]  # keep the downloaded .deb files for the cache
    archives = "/var/cache/apt/archives/"
    argv += [f'--setup-hook=mkdir -p "$1"{archives}', f"--setup-hook=sync-in {cache} {archives}"]
    argv += [f"--setup-hook=sync-in {setup} /"]
    argv += [f"--customize-hook=sync-out {archives} {cache}"]
    return [*argv, debianfiles.SUITE, str(root), *debianfiles.SOURCES]
