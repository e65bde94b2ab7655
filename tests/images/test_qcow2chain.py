"""``tashi.images.qcow2chain``: a plain qcow2 chain read from its headers gives what
``qemu-img info --output=json --backing-chain`` gives, and anything else is left to it."""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tashi.domain.errors import InvalidInput
from tashi.images import qcow2chain
from tashi.images.qemuimg import ChainTop, chain_top

MiB = 2**20


def qemu_img(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"qemu-img {args}: {done.stderr}")
    return done.stdout


def overlay(
    image: str, backing: str, *size: str, fmt: str = "qcow2", cwd: Path | None = None
) -> None:
    """A qcow2 ``image`` over ``backing`` (of format ``fmt``), as qemu-img makes it."""
    qemu_img("create", "-q", "-f", "qcow2", "-F", fmt, "-b", backing, image, *size, cwd=cwd)


def by_qemu_img(image: Path, root: Path) -> ChainTop:
    out = qemu_img("info", "--output=json", "--backing-chain", str(image))
    return chain_top(out, image.name, root)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if shutil.which("qemu-img") is None:
        raise AssertionError("qemu-img is not installed: run `make test`, which does")
    images = tmp_path / "images"
    images.mkdir()
    return images.resolve()


def same_as_qemu_img(image: Path, root: Path) -> ChainTop:
    read = qcow2chain.read_top(image, root, check_locks=True)
    assert read is not None, f"{image.name} was left to qemu-img"
    assert read == by_qemu_img(image, root)
    return read


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["-o", "compat=0.10"],  # version 2
        ["-o", "cluster_size=512"],
        ["-o", "cluster_size=2M"],
        ["-o", "lazy_refcounts=on"],
        ["-o", "refcount_bits=64"],
        ["-o", "preallocation=metadata"],
    ],
)
def test_a_standalone_qcow2_reads_as_qemu_img_reads_it(root: Path, options: list[str]) -> None:
    image = root / "one.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", *options, str(image), "1000M")
    assert same_as_qemu_img(image, root) == ChainTop("qcow2", 1000 * MiB)


def test_a_converted_image_with_data_reads_as_qemu_img_reads_it(root: Path) -> None:
    raw = root / "data.raw"
    raw.write_bytes(os.urandom(3 * MiB + 512))
    image = root / "data.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", str(raw), str(image))
    assert same_as_qemu_img(image, root) == ChainTop("qcow2", 3 * MiB + 512)


def test_a_chain_to_qcow2_and_raw_with_relative_names_reads_as_qemu_img_reads_it(
    root: Path,
) -> None:
    (root / "bases").mkdir()
    qemu_img("create", "-q", "-f", "raw", str(root / "bases" / "leaf.raw"), "64M")
    overlay("bases/mid.qcow2", "leaf.raw", fmt="raw", cwd=root)
    overlay("top.qcow2", "bases/mid.qcow2", "96M", cwd=root)
    overlay(str(root / "clone.qcow2"), str(root / "top.qcow2"))
    assert same_as_qemu_img(root / "bases" / "mid.qcow2", root) == ChainTop("qcow2", 64 * MiB)
    assert same_as_qemu_img(root / "top.qcow2", root) == ChainTop("qcow2", 96 * MiB)
    assert same_as_qemu_img(root / "clone.qcow2", root) == ChainTop("qcow2", 96 * MiB)


def test_extensions_qemu_img_adds_are_read_past(root: Path) -> None:
    image = root / "marked.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(image), "8M")
    qemu_img("bitmap", "--add", str(image), "changes")  # a bitmaps extension, autoclear bit
    assert same_as_qemu_img(image, root) == ChainTop("qcow2", 8 * MiB)


def test_a_backing_file_outside_the_store_is_refused_before_it_is_opened(root: Path) -> None:
    outside = root.parent / "host-secret.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(outside), "1M")
    evil = root / "evil.qcow2"
    overlay(str(evil), str(outside))
    with pytest.raises(InvalidInput, match="backing file outside the image store"):
        qcow2chain.read_top(evil, root, check_locks=True)
    with pytest.raises(InvalidInput, match="backing file outside the image store"):
        by_qemu_img(evil, root)
    via_link = root / "link.qcow2"
    via_link.symlink_to(outside)
    linked = root / "linked.qcow2"
    overlay(str(linked), "link.qcow2")
    with pytest.raises(InvalidInput, match="backing file outside the image store"):
        qcow2chain.read_top(linked, root, check_locks=True)


def test_what_is_not_a_plain_qcow2_chain_is_left_to_qemu_img(root: Path) -> None:
    qemu_img("create", "-q", "-f", "raw", str(root / "plain.raw"), "4M")
    qemu_img("create", "-q", "-f", "vmdk", str(root / "disk.vmdk"), "4M")
    qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        f"data_file={root / 'ext.raw'}",
        str(root / "ext.qcow2"),
        "4M",
    )
    qemu_img(
        "create", "-q", "-f", "qcow2", "-F", "vmdk", "-b", "disk.vmdk", str(root / "on-vmdk.qcow2")
    )
    (root / "broken.qcow2").write_bytes(b"QFI\xfb" + b"\xff" * 508)
    (root / "short.qcow2").write_bytes(b"QFI\xfb\0\0\0\3")
    dirty = root / "dirty.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(dirty), "4M")
    with dirty.open("r+b") as file:
        file.seek(72)
        file.write(struct.pack(">Q", 1))  # the dirty bit
    qemu_img("create", "-q", "-f", "qcow2", str(root / "gone.qcow2"), "4M")
    qemu_img(
        "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "gone.qcow2", str(root / "orphan.qcow2")
    )
    (root / "gone.qcow2").unlink()
    for name in (
        "plain.raw",
        "disk.vmdk",
        "ext.qcow2",
        "on-vmdk.qcow2",
        "broken.qcow2",
        "short.qcow2",
        "dirty.qcow2",
        "orphan.qcow2",
        "missing.qcow2",
    ):
        assert qcow2chain.read_top(root / name, root, check_locks=True) is None, name


@contextmanager
def held_byte(image: Path, offset: int) -> Iterator[None]:
    """A shared OFD lock on one byte of ``image``, as QEMU takes its lock bytes."""
    fd = os.open(image, os.O_RDONLY)
    try:
        lock = struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, offset, 1, 0)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize("offset", [101, 103])  # QEMU's "write" and "resize" permission bytes
def test_a_layer_qemu_writes_is_left_to_qemu_img_which_refuses_it(root: Path, offset: int) -> None:
    base = root / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "4M")
    clone = root / "clone.qcow2"
    overlay(str(clone), str(base))
    for locked in (clone, base):
        with held_byte(locked, offset):
            for image in (clone, base) if locked is base else (clone,):
                assert qcow2chain.read_top(image, root, check_locks=True) is None
                done = subprocess.run(
                    ["qemu-img", "info", "--backing-chain", str(image)],
                    capture_output=True,
                    text=True,
                )
                assert done.returncode != 0 and "lock" in done.stderr
                forced = qcow2chain.read_top(image, root, check_locks=False)
                assert forced == ChainTop("qcow2", 4 * MiB)


def test_a_byte_qemu_img_info_does_not_test_does_not_stop_the_read(root: Path) -> None:
    base = root / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "4M")
    with held_byte(base, 100), held_byte(base, 201):  # a VM reading it as its backing file
        assert same_as_qemu_img(base, root) == ChainTop("qcow2", 4 * MiB)
