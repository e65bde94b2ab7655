"""The pure parts of ``tashi.guestimage.bootable`` (the boot itself: ``test_guest_boot.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tashi.domain.errors import InvalidInput
from tashi.guestimage import bootable


def test_syslinux_boots_the_kernel_and_initrd_at_once_with_the_command_line() -> None:
    cfg = bootable.syslinux_cfg("console=ttyS0 root=initramfs quiet")
    assert cfg.splitlines() == [
        "SERIAL 0 115200",
        "DEFAULT tashi",
        "PROMPT 0",
        "TIMEOUT 0",
        "LABEL tashi",
        "  KERNEL vmlinuz",
        "  INITRD initrd",
        "  APPEND console=ttyS0 root=initramfs quiet",
    ]
    with pytest.raises(InvalidInput, match="one line"):
        bootable.syslinux_cfg("quiet\nSAY injected")


def test_the_filesystem_holds_both_files_with_room_to_spare(tmp_path: Path) -> None:
    kernel, initrd = tmp_path / "k", tmp_path / "i"
    kernel.write_bytes(b"\0" * 100)
    initrd.write_bytes(b"\0" * 100)
    assert bootable.size_mb_for(kernel, initrd) == bootable.MIN_SIZE_MB
    with kernel.open("wb") as handle:
        handle.truncate(40 * 1024 * 1024 + 1)
    assert bootable.size_mb_for(kernel, initrd) == 41 + bootable.SLACK_MB


def test_an_image_name_the_store_would_refuse_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not an image name"):
        bootable.make_bootable(tmp_path / "k", tmp_path / "i", tmp_path / "a b.qcow2")


def test_a_kernel_that_is_not_a_bzimage_is_refused(tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(1024))  # what a PVH .kernel sidecar is
    with pytest.raises(InvalidInput, match="not a bzImage"):
        bootable.make_bootable(kernel, tmp_path / "i", tmp_path / "boot.qcow2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vmlinux"]
