"""Fixtures of the end-to-end tests: the tiny guest image (built once per run, reused after)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tashi.images import boot, bootable, builder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    lines: list[str] = []
    result = builder.build(builder.BuildOptions(out_dir=REPO / "var" / "images"), say=lines.append)
    assert builder.is_complete(result.image), "\n".join(lines)
    return result.image


@pytest.fixture(scope="session")
def bootloader_image(tiny_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A qcow2 booting from its own bootloader (SYSLINUX) like a cloud image: no sidecars."""
    return bootable.make_bootable(
        boot.sidecar(tiny_image, boot.KERNEL_SUFFIX),
        boot.sidecar(tiny_image, boot.INITRD_SUFFIX),
        tmp_path_factory.mktemp("bootloader") / "tashi-syslinux.qcow2",
    )


def stock_image_store(image: Path, vfs: Path) -> str:
    """Copy the tiny image and its direct-boot sidecars into a test's image store."""
    images = vfs / "images"
    images.mkdir(parents=True, exist_ok=True)
    for path in image.parent.glob(image.name + "*"):
        shutil.copyfile(path, images / path.name)
    return image.name
