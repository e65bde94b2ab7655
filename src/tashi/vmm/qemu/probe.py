"""Whether KVM really works on this host: a probe boot under ``-accel kvm``, with a deadline.

``/dev/kvm`` can exist and still be useless: nested under another hypervisor, KVM guests here
hang right after the BIOS ("Booting from ROM") and never print a line. So ``[Qemu] accel =
auto`` boots something under KVM, once per process, and uses KVM only if it runs:

1. a 158-byte multiboot stub (built in, below) that enters 64-bit long mode, writes ``L`` to
   the serial port and leaves qemu through the ``isa-debug-exit`` device with status 67;
2. then, when a Linux kernel is at hand (``[Qemu] probeKernel``, else the first ``.kernel``
   direct-boot sidecar of the image store), that kernel, with no root file system, until it
   gets as far as looking for one: it prints ``Unable to mount root fs`` (or ``Run /`` when
   it has an initramfs of its own), so its timers, interrupts and devices worked. This is the
   step nested KVM fails on this machine's kind of host: the stub passes there (long mode
   works); Debian's cloud kernel printed nothing, and Tashi's own kernel prints its first 60
   lines (``Linux version`` among them) and hangs when it calibrates its timers. Without a
   kernel the probe trusts the stub alone and says so in the log.

Each step has ``[Qemu] kvmProbeTimeout`` seconds; a step that fails means TCG. Results are
cached per process (by qemu binary and kernel), so several drivers in one process (tests, the
virtual cluster) probe once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# A multiboot (a.out kludge) image loaded at 1 MiB. Its code, in GNU as syntax:
#   .code32: PML4[0] -> PDPT -> PD[0] = 2 MiB identity page (tables at 0x101000-0x103fff,
#   zeroed as bss), CR3, CR4.PAE, EFER.LME, CR0.PG|PE, lgdt, ljmp $8 to .code64:
#   outb 'L' to 0x3f8; outb 0x21 to 0xf4 (isa-debug-exit: qemu exits with (0x21 << 1) | 1 = 67)
_STUB = bytes.fromhex(
    "02b0ad1b00000100fe4f51e400001000000010009e0010000040100020001000"
    "c7050010100003201000c7050020100003301000c7050030100083000000b800"
    "1010000f22d80f20e083c8200f22e0b9800000c00f320d000100000f300f20c0"
    "0d010000800f22c00f011598001000ea76001000080066baf803b04cee66baf4"
    "00b021eef4ebfd90000000000000000000000000009a20000f0088001000"
)
_STUB_EXIT = 67
# What a kernel prints once it has booted as far as its root file system (see above).
_BOOTED_LINES = (b"Unable to mount root fs", b"Run /")

_cache: dict[tuple[str, str], str] = {}


def find_kernel(setting: str, images_dir: Path | None) -> Path | None:
    """The kernel the probe boots: ``setting`` if given, else the store's smallest kernel
    sidecar, the quickest to load (the tiny guest's 19 MB, not the Debian guest's 53 MB), by
    name among equals."""
    if setting:
        return Path(setting)
    if images_dir is None:
        return None
    try:
        sized = [(path.stat().st_size, path.name, path) for path in images_dir.glob("*.kernel")]
    except OSError:
        return None
    return min(sized)[2] if sized else None


async def choose_accel(setting: str, qemu_bin: Path, kernel: Path | None, timeout: float) -> str:
    """``kvm`` or ``tcg``: ``setting`` itself unless it is ``auto``, then the probe's verdict."""
    if setting in ("kvm", "tcg"):
        return setting
    key = (str(qemu_bin), str(kernel))
    if key not in _cache:
        _cache[key] = "kvm" if await kvm_works(qemu_bin, kernel, timeout) else "tcg"
    return _cache[key]


async def kvm_works(qemu_bin: Path, kernel: Path | None, timeout: float) -> bool:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        log.info("KVM probe: /dev/kvm is missing or not usable; using TCG")
        return False
    if not await boots(qemu_bin, "kvm", None, timeout):
        log.warning("KVM probe: the built-in stub did not run under KVM; using TCG")
        return False
    if kernel is None:
        log.warning("KVM probe: no kernel to boot (set [Qemu] probeKernel); trusting the stub")
        return True
    if not await boots(qemu_bin, "kvm", kernel, timeout):
        log.warning(
            "KVM probe: %s did not boot under KVM within %.1f s; using TCG", kernel, timeout
        )
        return False
    log.info("KVM probe: %s boots under KVM; using KVM", kernel)
    return True


async def boots(qemu_bin: Path, accel: str, kernel: Path | None, timeout: float) -> bool:
    """Whether ``kernel`` (``None``: the stub) runs under ``accel`` within ``timeout`` s."""
    with tempfile.TemporaryDirectory(prefix="tashi-probe-") as scratch:
        if kernel is None:
            kernel = Path(scratch) / "stub.bin"
            kernel.write_bytes(_STUB)
        argv = [str(qemu_bin), "-accel", accel, "-M", "pc", "-m", "256", "-nodefaults"]
        argv += ["-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio"]
        argv += ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", str(kernel)]
        argv += ["-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"]
        seen, status = await _run(argv, timeout)
    return _booted(seen) or status == _STUB_EXIT


def _booted(seen: bytes) -> bool:
    return any(line in seen for line in _BOOTED_LINES)


async def _run(argv: Sequence[str], timeout: float) -> tuple[bytes, int | None]:
    """Run qemu until it exits, prints a booted line, or ``timeout``; what it printed and its
    exit status (``None`` if it was stopped). The process is always gone on return."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        log.warning("KVM probe: cannot run %s: %s", argv[0], exc.strerror)
        return b"", None
    assert proc.stdout is not None
    seen = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await proc.stdout.read(4096):
                seen = (seen + chunk)[-8192:]
                if _booted(seen):
                    return seen, None
            return seen, await proc.wait()
    except TimeoutError:
        return seen, None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
