"""A qcow2 that boots from its own bootloader, made from a kernel and an initrd: ``make_bootable``.

Tashi has no cloud image to download, yet a user's own image (a disk with a bootloader, no
``.kernel`` sidecar) must boot. This makes one from the tiny guest's kernel and initrd, so that the
tests can prove it, without root, mounts or loop devices. The kernel must be a bzImage: the tiny
guest's ``.kernel`` sidecar is an ELF vmlinux that only QEMU's PVH boot loads, so take
``tashi.guestimage.builder.bzimage_of(image)``.

1. a raw file holding a FAT filesystem on the whole file (``mkfs.vfat``, a "superfloppy": no
   partition table; SeaBIOS boots its boot sector like an MBR);
2. the kernel, the initrd and ``syslinux.cfg`` copied in with ``mcopy`` (mtools, no mount);
3. the SYSLINUX boot sector and ``ldlinux.sys``/``ldlinux.c32`` written by ``syslinux --install``
   (Debian's ``syslinux`` works on the unmounted file through mtools);
4. ``qemu-img convert -O qcow2``, renamed into place.

The kernel command line is ``console=ttyS0 root=initramfs quiet`` by default: the tiny initrd
finds no ext4 root, stays in the initramfs (which holds the whole userland) and prints its UP
marker on the serial console. Debian packages: dosfstools, mtools, syslinux, qemu-utils.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tashi.domain import validation
from tashi.domain.errors import InvalidInput
from tashi.guestimage import vmlinux
from tashi.guestimage.commands import require, run

DEFAULT_CMDLINE = "console=ttyS0 root=initramfs quiet"
SLACK_MB = 8  # room beyond the two files: FAT tables, ldlinux.sys and ldlinux.c32 (about 120 KiB)
MIN_SIZE_MB = 32
REQUIRED_PROGRAMS = ("mkfs.vfat", "mcopy", "syslinux", "qemu-img")
_MIB = 1024 * 1024
# mtools refuses some geometries of a plain file unless told not to check them.
_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


def syslinux_cfg(cmdline: str) -> str:
    """Boot ``vmlinuz`` with ``initrd`` at once (no prompt), SYSLINUX itself also on COM1."""
    if "\n" in cmdline:
        raise InvalidInput("a kernel command line is one line")
    return (
        "SERIAL 0 115200\n"
        "DEFAULT tashi\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL tashi\n"
        "  KERNEL vmlinuz\n"
        "  INITRD initrd\n"
        f"  APPEND {cmdline}\n"
    )


def size_mb_for(kernel: Path, initrd: Path) -> int:
    """MiB of the FAT filesystem: both files plus ``SLACK_MB``, ``MIN_SIZE_MB`` or more."""
    files = kernel.stat().st_size + initrd.stat().st_size
    return max(MIN_SIZE_MB, -(-files // _MIB) + SLACK_MB)


def make_bootable(kernel: Path, initrd: Path, out: Path, *, cmdline: str = DEFAULT_CMDLINE) -> Path:
    """Write ``out`` (a qcow2 booting ``kernel`` + ``initrd`` through SYSLINUX) and return it.

    The work happens in a hidden directory beside ``out``; ``out`` appears whole or not at all.
    Raises ``BackendFailure`` when a program is missing or fails, ``InvalidInput`` when
    ``kernel`` is not a bzImage."""
    validation.image_name(out.name)  # InvalidInput for a name the image store would refuse
    if not vmlinux.is_bzimage(kernel):
        raise InvalidInput(f"{kernel} is not a bzImage, which SYSLINUX needs")
    for program in REQUIRED_PROGRAMS:
        require(program)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        work = Path(tmp)
        raw = work / "disk.raw"
        with raw.open("wb") as handle:
            handle.truncate(size_mb_for(kernel, initrd) * _MIB)
        run(["mkfs.vfat", "-n", "TASHIBOOT", raw])
        config = work / "syslinux.cfg"
        config.write_text(syslinux_cfg(cmdline))
        for source, name in ((kernel, "vmlinuz"), (initrd, "initrd"), (config, "syslinux.cfg")):
            run(["mcopy", "-i", raw, source, f"::{name}"], env=_MTOOLS_ENV)
        run(["syslinux", "--install", raw], env=_MTOOLS_ENV)
        qcow2 = work / "disk.qcow2"
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2])
        os.replace(qcow2, out)
    return out
