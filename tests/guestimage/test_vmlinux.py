"""``tashi.guestimage.vmlinux``: the ELF vmlinux of a bzImage, taken only when it has a PVH entry.

Synthetic bzImages (a setup header and a compressed payload of a small ELF file) cover the
formats and the refusals; ``test_builder.py`` checks the real Debian kernel.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tashi.guestimage import vmlinux
from tests.images.guests import require_programs


def _elf(*notes: tuple[bytes, int]) -> bytes:
    """A 64-bit little-endian ELF header, one PT_NOTE program header and its notes."""
    body = b"".join(
        struct.pack("<III", len(name) + 1, 4, kind) + _pad(name + b"\0") + b"\x00\x10\x00\x01"
        for name, kind in notes
    )
    header = b"\x7fELF\x02\x01\x01" + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x1000000, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 4, 4, 64 + 56, 0, 0, len(body), len(body), 4)
    return header + program + body + b"rest of the kernel" * 100


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _bzimage(payload: bytes, *, setup_sects: int = 1, protocol: int = 0x20F) -> bytes:
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, protocol)
    struct.pack_into("<II", setup, 0x248, 300, len(payload))
    return bytes(setup) + bytes(300) + payload + b"decompressor tail"


def _with_size(packed: bytes, plain: bytes) -> bytes:
    return packed + struct.pack("<I", len(plain))  # what the kernel's size_append adds


def _gzip(plain: bytes) -> bytes:
    return gzip.compress(plain)  # gzip's own trailer holds the size


def _xz(plain: bytes) -> bytes:
    return _with_size(lzma.compress(plain, check=lzma.CHECK_CRC32), plain)


def _lz4(plain: bytes) -> bytes:
    require_programs("lz4")
    done = subprocess.run(["lz4", "-l", "-c", "-q"], input=plain, capture_output=True, check=True)
    return _with_size(done.stdout, plain)  # -l: the legacy frame, as the kernel's build makes


PVH = _elf((b"Linux", 6), (b"Xen", vmlinux.PVH_NOTE_TYPE))


@pytest.mark.parametrize("pack", [_gzip, _xz, _lz4], ids=["gzip", "xz", "lz4"])
def test_a_kernel_with_a_pvh_note_is_extracted(
    pack: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    bzimage = tmp_path / "vmlinuz"
    bzimage.write_bytes(_bzimage(pack(PVH)))
    assert vmlinux.is_bzimage(bzimage)
    found = vmlinux.extract_pvh(bzimage, tmp_path / "vmlinux")
    assert found.ok, found.why
    assert (tmp_path / "vmlinux").read_bytes() == PVH
    assert not vmlinux.is_bzimage(tmp_path / "vmlinux")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vmlinux", "vmlinuz"]  # no scratch


def test_setup_sects_zero_means_four(tmp_path: Path) -> None:
    bzimage = tmp_path / "vmlinuz"
    data = bytearray(_bzimage(gzip.compress(PVH), setup_sects=4))
    data[0x1F1] = 0
    bzimage.write_bytes(bytes(data))
    assert vmlinux.extract_pvh(bzimage, tmp_path / "vmlinux").ok


@pytest.mark.parametrize(
    ("elf", "why"),
    [
        (_elf((b"Linux", 6), (b"Xen", 17)), "no PVH entry point"),
        (_elf((b"Xe", vmlinux.PVH_NOTE_TYPE)), "no PVH entry point"),
        (b"\x7fELF\x01\x01" + bytes(100), "not a 64-bit ELF"),
    ],
)
def test_a_kernel_without_a_pvh_note_is_left_alone(elf: bytes, why: str, tmp_path: Path) -> None:
    bzimage = tmp_path / "vmlinuz"
    bzimage.write_bytes(_bzimage(gzip.compress(elf)))
    found = vmlinux.extract_pvh(bzimage, tmp_path / "vmlinux")
    assert not found.ok
    assert why in found.why
    assert not (tmp_path / "vmlinux").exists()


def test_formats_not_decompressed_here_and_broken_payloads_are_reported(tmp_path: Path) -> None:
    bzimage = tmp_path / "vmlinuz"
    cases = [
        (_bzimage(_with_size(b"\x28\xb5\x2f\xfd" + bytes(40), PVH)), "zstd payload"),
        (_bzimage(gzip.compress(PVH)[:-30]), "does not decompress"),
        (_bzimage(_with_size(lzma.compress(PVH), PVH + b"x")), "the kernel says"),
        (_bzimage(gzip.compress(PVH), protocol=0x207), "no payload fields"),
        (b"MZ" + bytes(4096), "not a bzImage"),
        (_bzimage(gzip.compress(PVH))[: 1024 + 300 + 10], "outside the file"),
    ]
    for data, why in cases:
        bzimage.write_bytes(data)
        found = vmlinux.extract_pvh(bzimage, tmp_path / "vmlinux")
        assert (found.ok, why in found.why) == (False, True), (why, found.why)
    assert not (tmp_path / "vmlinux").exists()
    assert not vmlinux.is_bzimage(tmp_path / "missing")
