"""How an image in the store says it boots: the direct-boot sidecar convention.

An image with a ``.kernel`` file beside it (and optionally ``.initrd`` and ``.cmdline``) is booted
directly, with ``-kernel``/``-initrd``/``-append``::

    tashi-tiny.qcow2            the root disk (virtio-blk, /dev/vda in the guest)
    tashi-tiny.qcow2.kernel     -kernel
    tashi-tiny.qcow2.initrd     -initrd   (optional)
    tashi-tiny.qcow2.cmdline    -append   (optional; one line of text)

The ``.kernel`` file is whatever QEMU's ``-kernel`` loads: a bzImage, or an uncompressed ELF
``vmlinux`` with a PVH entry point, which QEMU (``-M pc`` or q35) boots through PVH, skipping the
real-mode setup and the decompression; the tiny guest's is the latter. A bootloader such as
SYSLINUX cannot load an ELF vmlinux (``tashi.guestimage.builder.bzimage_of`` keeps the bzImage).

An image without a ``.kernel`` file is booted from its own bootloader, like any cloud image.
``tashi-image build`` writes the sidecars (``tashi.guestimage.builder``); the node manager reads
them with ``direct_boot_of``. See ``docs/guest-image.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KERNEL_SUFFIX = ".kernel"
INITRD_SUFFIX = ".initrd"
CMDLINE_SUFFIX = ".cmdline"
SIDECAR_SUFFIXES = (KERNEL_SUFFIX, INITRD_SUFFIX, CMDLINE_SUFFIX)


@dataclass(frozen=True, slots=True)
class DirectBoot:
    """What to pass to QEMU for an image booted without a bootloader."""

    kernel: Path
    initrd: Path | None
    cmdline: str | None

    def qemu_args(self) -> list[str]:
        """``-kernel K [-initrd I] [-append C]``, as argv items."""
        args = ["-kernel", str(self.kernel)]
        if self.initrd is not None:
            args += ["-initrd", str(self.initrd)]
        if self.cmdline:
            args += ["-append", self.cmdline]
        return args


def sidecar(image: Path, suffix: str) -> Path:
    """The path of one sidecar of ``image`` (``tashi-tiny.qcow2`` → ``tashi-tiny.qcow2.kernel``)."""
    return image.with_name(image.name + suffix)


def direct_boot_of(image: Path) -> DirectBoot | None:
    """The direct-boot files of ``image``, or ``None`` when it boots from its own bootloader."""
    kernel = sidecar(image, KERNEL_SUFFIX)
    if not kernel.is_file():
        return None
    initrd = sidecar(image, INITRD_SUFFIX)
    cmdline = sidecar(image, CMDLINE_SUFFIX)
    return DirectBoot(
        kernel=kernel,
        initrd=initrd if initrd.is_file() else None,
        cmdline=" ".join(cmdline.read_text().split()) if cmdline.is_file() else None,
    )


def is_sidecar(name: str) -> bool:
    """Whether a file name in the store is a sidecar of another image rather than an image."""
    return name.endswith(SIDECAR_SUFFIXES)
