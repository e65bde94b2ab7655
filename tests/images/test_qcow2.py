"""``tashi.images.qcow2``: the overlays it writes are the ones ``qemu-img create`` writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tashi.images import qcow2

GiB = 2**30
TiB = 2**40


def qemu_img(*args: str) -> str:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=True)
    return done.stdout


def qemu_io(image: Path, command: str) -> str:
    argv = ["qemu-io", "-f", "qcow2", "-c", command, str(image)]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def virtual_size(image: Path) -> int:
    return int(json.loads(qemu_img("info", "--output=json", str(image)))["virtual-size"])


def reference(tmp_path: Path, backing: Path, fmt: str) -> bytes:
    made = tmp_path / "by-qemu-img.qcow2"
    made.unlink(missing_ok=True)
    qemu_img("create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(backing), str(made))
    return made.read_bytes()


def sparse_raw(path: Path, size: int) -> Path:
    path.touch()
    os.truncate(path, size)
    return path


@pytest.mark.parametrize(
    "size",
    [
        64 * 2**20,
        GiB,
        10 * GiB + 512,  # not a whole L2 table's span
        3 * TiB,  # a 48 KiB L1 table
        5 * TiB,  # an L1 table of two clusters
        15 * TiB,
    ],
)
def test_the_overlay_of_a_raw_image_is_qemu_imgs_byte_for_byte(tmp_path: Path, size: int) -> None:
    backing = sparse_raw(tmp_path / "base.raw", size)
    assert qcow2.supports(backing, "raw", size)
    assert qcow2.overlay_bytes(backing, "raw", size) == reference(tmp_path, backing, "raw")


def test_the_overlay_of_the_tiny_guest_is_qemu_imgs_and_reads_through(
    tmp_path: Path, tiny_image: Path
) -> None:
    size = virtual_size(tiny_image)
    overlay = tmp_path / "disk0.qcow2"
    qcow2.write_overlay(tiny_image, "qcow2", size, overlay)
    assert overlay.read_bytes() == reference(tmp_path, tiny_image, "qcow2")
    qemu_img("check", "-q", str(overlay))
    # Every sector reads as the backing image's: the empty L1 table maps nothing.
    qemu_img("compare", "-q", "-f", "qcow2", "-F", "qcow2", str(overlay), str(tiny_image))
    chain = json.loads(qemu_img("info", "--output=json", "--backing-chain", str(overlay)))
    assert chain[0]["backing-filename-format"] == "qcow2"
    assert chain[1]["filename"] == str(tiny_image)


def test_an_overlay_takes_writes_and_leaves_its_backing_alone(tmp_path: Path) -> None:
    backing = sparse_raw(tmp_path / "base.raw", GiB)
    overlay = tmp_path / "disk0.qcow2"
    qcow2.write_overlay(backing, "raw", GiB, overlay)
    assert "wrote 131072/131072 bytes" in qemu_io(overlay, "write -P 0x5a 1M 128k")
    qemu_img("check", "-q", str(overlay))
    assert "read 131072/131072 bytes" in qemu_io(overlay, "read -P 0x5a 1M 128k")
    assert backing.read_bytes()[: 2 * 2**20].count(0) == 2 * 2**20


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    backing = sparse_raw(tmp_path / "base.raw", GiB)
    overlay = tmp_path / "disk0.qcow2"
    overlay.write_bytes(b"someone's data")
    with pytest.raises(FileExistsError):
        qcow2.write_overlay(backing, "raw", GiB, overlay)
    assert overlay.read_bytes() == b"someone's data"


@pytest.mark.parametrize(
    ("backing", "fmt", "size"),
    [
        (Path("/images/base.raw"), "raw", 1000),  # not whole sectors
        (Path("/images/base.raw"), "raw", 0),
        (Path("/images/" + "x" * 70000), "raw", GiB),  # a name the header cluster cannot hold
        (Path("/images/base.raw"), "raw", 2**62),  # an L1 table past one refcount block
        (Path("/images/base.raw"), "", GiB),
    ],
)
def test_what_it_does_not_write_is_left_to_qemu_img(backing: Path, fmt: str, size: int) -> None:
    assert not qcow2.supports(backing, fmt, size)
    with pytest.raises(ValueError, match="no overlay"):
        qcow2.overlay_bytes(backing, fmt, size)
