"""The KVM probe: its two steps work (shown under TCG), a guest that hangs is caught by the
deadline, and the verdict is cached.

Whether KVM itself works depends on the machine (here it does not: nested KVM hangs), so the
tests check the mechanism, and ``test_auto_picks_one`` only that ``auto`` decides.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from tashi.vmm.qemu import probe

pytestmark = pytest.mark.anyio

QEMU = Path("/usr/bin/qemu-system-x86_64")


def _hanging_guest() -> bytes:
    """A multiboot image whose code is ``jmp .`` (eb fe): it runs and never says anything."""
    magic, flags, base = 0x1BADB002, 0x00010000, 0x100000
    checksum = -(magic + flags) & 0xFFFFFFFF
    header = struct.pack("<8I", magic, flags, checksum, base, base, base + 34, 0, base + 32)
    return header + bytes.fromhex("ebfe")


def _talking_then_hanging_guest() -> bytes:
    """A multiboot image that prints ``Linux version`` on the serial port, then ``jmp .``: a
    kernel that starts but never gets as far as its root file system (nested KVM here)."""
    magic, flags, base = 0x1BADB002, 0x00010000, 0x100000
    text = b"Linux version 6.1 (a kernel that hangs)\n\0"
    # mov esi, text; mov dx, 0x3f8; 1: lodsb; test al, al; jz 2f; out dx, al; jmp 1b; 2: jmp 2b
    code = bytes.fromhex("be") + struct.pack("<I", base + 32 + 19)
    code += bytes.fromhex("66baf803ac84c07403eeebf8ebfe")
    assert len(code) == 19
    end = base + 32 + len(code) + len(text)
    checksum = -(magic + flags) & 0xFFFFFFFF
    header = struct.pack("<8I", magic, flags, checksum, base, base, end, 0, base + 32)
    return header + code + text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_stub_runs_in_long_mode_under_tcg() -> None:
    assert await probe.boots(QEMU, "tcg", None, 10.0)


async def test_a_kernel_boots_when_it_gets_as_far_as_its_root_fs(tiny_image: Path) -> None:
    kernel = Path(f"{tiny_image}.kernel")
    assert probe.find_kernel("", tiny_image.parent) == kernel
    assert await probe.boots(QEMU, "tcg", kernel, 30.0)


async def test_a_kernel_that_prints_its_first_line_and_hangs_fails(tmp_path: Path) -> None:
    liar = tmp_path / "liar.bin"
    liar.write_bytes(_talking_then_hanging_guest())
    seen, status = await probe._run(
        [str(QEMU), "-accel", "tcg", "-M", "pc", "-nodefaults", "-display", "none",
         "-serial", "stdio", "-kernel", str(liar)],
        2.0,
    )  # fmt: skip
    assert b"Linux version 6.1" in seen and status is None  # it spoke, then ran to the deadline
    assert not await probe.boots(QEMU, "tcg", liar, 2.0)


async def test_a_guest_that_hangs_fails_at_the_deadline(tmp_path: Path) -> None:
    hang = tmp_path / "hang.bin"
    hang.write_bytes(_hanging_guest())
    started = time.monotonic()
    assert not await probe.boots(QEMU, "tcg", hang, 1.0)
    assert 1.0 <= time.monotonic() - started < 5.0  # it ran until the deadline, then died


async def test_a_chosen_accelerator_is_not_probed(tmp_path: Path) -> None:
    missing = tmp_path / "no-qemu"
    assert await probe.choose_accel("tcg", missing, None, 1.0) == "tcg"
    assert await probe.choose_accel("kvm", missing, None, 1.0) == "kvm"


async def test_auto_picks_one_and_remembers_it(tiny_image: Path) -> None:
    kernel = Path(f"{tiny_image}.kernel")
    first = await probe.choose_accel("auto", QEMU, kernel, 5.0)
    assert first in ("kvm", "tcg")
    started = time.monotonic()
    assert await probe.choose_accel("auto", QEMU, kernel, 5.0) == first
    assert time.monotonic() - started < 0.1  # cached: no second boot


def test_a_missing_kernel_setting_falls_back_to_the_store(tmp_path: Path) -> None:
    assert probe.find_kernel("", tmp_path) is None
    (tmp_path / "b.qcow2.kernel").write_bytes(b"")
    (tmp_path / "a.qcow2.kernel").write_bytes(b"")
    assert probe.find_kernel("", tmp_path) == tmp_path / "a.qcow2.kernel"
    assert probe.find_kernel("/boot/vmlinuz", tmp_path) == Path("/boot/vmlinuz")
