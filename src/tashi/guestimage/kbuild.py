"""The tiny guest's own Linux kernel, built from Debian's ``linux-source-6.1``.

Debian's cloud kernel is made for every cloud: under TCG it spends most of a boot probing and
initialising what a Tashi guest never has, and half of a guest's fresh memory is its 51 MiB
image. This kernel has only what the guest uses, all built in (no modules): a 64-bit PVH entry
point, the 8250 serial console, virtio-pci with virtio-blk and virtio-net (and e1000), ext4, the
initramfs, IPv4 with packet sockets for udhcpc, ACPI with the power button and evdev for
acpid, and ACPI PCI hotplug with the uevent helper (volumes: a disk that comes or goes while
the guest runs, ``guestfiles.HOTPLUG``). One boot under TCG takes about half the CPU of the
cloud kernel's (0.87 against 1.86 CPU-s to TASHI-GUEST-UP, medians of 8 and 6) and about 60
MiB less of qemu's memory.

The configuration is the kernel's own ``tinyconfig`` (``allnoconfig`` with
``kernel/configs/tiny.config`` and ``arch/x86/configs/tiny.config``) plus ``FRAGMENT``; after
``allnoconfig`` every option in ``REQUIRED`` is checked in the resulting ``.config``, so an
option that did not take (a dependency missing in a newer source) fails the build with its name
rather than giving a guest that does not boot.

A build takes 3 to 4 minutes on 2 cores, so its two outputs (``vmlinux``, ``bzImage``) are
kept in a cache directory under a key of the source package version, ``FRAGMENT`` and the
compiler: a rebuild of the image, or a build of another image with the same cache, reuses them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tashi.domain.errors import BackendFailure
from tashi.guestimage import debs, vmlinux
from tashi.guestimage.commands import require, run, run_logged

# On top of tinyconfig. Each line is needed by the guest (tashi.guestimage.guestfiles) or by QEMU's
# `-M pc` machine as Tashi starts it:
FRAGMENT = """\
CONFIG_64BIT=y
CONFIG_HYPERVISOR_GUEST=y
CONFIG_PVH=y
CONFIG_SMP=y
CONFIG_NR_CPUS=64
CONFIG_HZ_100=y
CONFIG_NO_HZ_IDLE=y
CONFIG_HIGH_RES_TIMERS=y
CONFIG_KERNEL_GZIP=y
CONFIG_PRINTK=y
CONFIG_TTY=y
CONFIG_UNIX98_PTYS=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_DEVTMPFS=y
CONFIG_PROC_FS=y
CONFIG_PROC_SYSCTL=y
CONFIG_SYSFS=y
CONFIG_TMPFS=y
CONFIG_SHMEM=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_MULTIUSER=y
CONFIG_FUTEX=y
CONFIG_EPOLL=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_EVENTFD=y
CONFIG_POSIX_TIMERS=y
CONFIG_FILE_LOCKING=y
CONFIG_NET=y
CONFIG_INET=y
CONFIG_UNIX=y
CONFIG_PACKET=y
CONFIG_PCI=y
CONFIG_VIRTIO_MENU=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_PCI_LEGACY=y
CONFIG_NETDEVICES=y
CONFIG_NET_CORE=y
CONFIG_VIRTIO_NET=y
CONFIG_ETHERNET=y
CONFIG_NET_VENDOR_INTEL=y
CONFIG_E1000=y
CONFIG_BLOCK=y
CONFIG_BLK_DEV=y
CONFIG_VIRTIO_BLK=y
CONFIG_EXT4_FS=y
CONFIG_ACPI=y
CONFIG_ACPI_BUTTON=y
CONFIG_INPUT=y
CONFIG_INPUT_EVDEV=y
CONFIG_HOTPLUG_PCI=y
CONFIG_HOTPLUG_PCI_ACPI=y
CONFIG_UEVENT_HELPER=y
"""

# Checked in the .config allnoconfig wrote: without any of these the guest does not boot, or
# boots without its disk, network, console or power button.
REQUIRED = (
    "64BIT", "PVH", "SERIAL_8250_CONSOLE", "BLK_DEV_INITRD", "RD_GZIP", "DEVTMPFS", "PROC_FS",
    "SYSFS", "BINFMT_ELF", "BINFMT_SCRIPT", "INET", "UNIX", "PACKET", "VIRTIO_PCI", "VIRTIO_NET",
    "VIRTIO_BLK", "EXT4_FS", "ACPI_BUTTON", "INPUT_EVDEV", "HOTPLUG_PCI_ACPI", "UEVENT_HELPER",
)  # fmt: skip

BUILD_TOOLS = ("tar", "xz", "make", "gcc", "flex", "bison", "bc")
BUILD_TIMEOUT = 3600.0  # a slow machine; 3 to 4 minutes on 2 cores here
# The version string names Tashi, not the user and host that compiled it (the date still varies).
_BUILD_ENV = {"KBUILD_BUILD_USER": "tashi", "KBUILD_BUILD_HOST": "tashi-image"}

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Kernel:
    vmlinux: Path  # ELF, with the PVH entry point note: the image's .kernel sidecar
    bzimage: Path  # the same kernel for bootloaders
    release: str  # `make kernelrelease`, e.g. 6.1.192
    cached: bool


def build(source_deb: Path, source_version: str, cache: Path, work: Path, say: Say) -> Kernel:
    """The kernel built from ``source_deb`` (Debian's ``linux-source-*.deb``) with ``FRAGMENT``:
    from ``cache`` when an earlier build left it there, else compiled in ``work`` and cached.

    Raises ``BackendFailure`` when a tool is missing or fails, or an option did not take."""
    target = cache / f"linux-{source_version}-{_key(source_version)}"
    found = _cached(target)
    if found is not None:
        return found
    for program in BUILD_TOOLS:
        require(program)
    work = work.absolute()  # make -C runs in the tree: KCONFIG_ALLCONFIG must not be relative
    tree = _unpack(source_deb, work / "linux", say)
    config = work / "tashi.config"
    config.write_text(_fragment_of(tree))
    run(["make", "-C", tree, "allnoconfig", f"KCONFIG_ALLCONFIG={config}"], env=_BUILD_ENV)
    missing = missing_options((tree / ".config").read_text())
    if missing:
        raise BackendFailure(
            f"the kernel configuration lacks {', '.join(missing)} after allnoconfig"
            f" (see {tree / '.config'})"
        )
    jobs = (os.cpu_count() or 1) + 1
    say(f"kernel: compiling Linux with {jobs} jobs; 3 to 4 minutes on 2 cores, once")

    def tick(elapsed: float) -> None:
        say(f"  still compiling the kernel ({elapsed:.0f} s)")

    log = work / "kernel-build.log"
    run_logged(
        ["make", "-C", tree, f"-j{jobs}", "bzImage"],
        log,
        env=_BUILD_ENV,
        timeout=BUILD_TIMEOUT,
        tick=tick,
    )
    release = run(["make", "-s", "-C", tree, "kernelrelease"], env=_BUILD_ENV).strip()
    return _keep(tree, release, target)


def missing_options(config: str) -> list[str]:
    """The ``REQUIRED`` options that are not ``=y`` in the text of a ``.config``."""
    set_ = {line.partition("=")[0] for line in config.splitlines() if line.endswith("=y")}
    return [option for option in REQUIRED if f"CONFIG_{option}" not in set_]


def _key(source_version: str) -> str:
    compiler = run(["gcc", "--version"]).splitlines()[0] if shutil.which("gcc") else "no gcc"
    text = f"{source_version}\n{compiler}\n{FRAGMENT}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cached(target: Path) -> Kernel | None:
    files = target / "vmlinux", target / "bzImage", target / "release"
    if not all(path.is_file() for path in files):
        return None
    return Kernel(files[0], files[1], files[2].read_text().strip(), cached=True)


def _unpack(deb: Path, into: Path, say: Say) -> Path:
    """The source tree of a ``linux-source-*.deb``: its ``usr/src/linux-source-*.tar.xz``
    unpacked into ``into`` (about 1.5 GB, 20 s)."""
    package = debs.unpack(deb, into / "package")
    tarballs = sorted((package / "usr" / "src").glob("linux-source-*.tar.xz"))
    if len(tarballs) != 1:
        raise BackendFailure(f"{deb.name} holds no single usr/src/linux-source-*.tar.xz")
    say(f"kernel: unpacking {tarballs[0].name}")
    run(["tar", "-xJf", tarballs[0], "-C", into], timeout=BUILD_TIMEOUT)
    tarballs[0].unlink()
    trees = [path for path in into.glob("linux-source-*") if path.is_dir()]
    if len(trees) != 1:
        raise BackendFailure(f"{tarballs[0].name} holds no single linux-source-*/ directory")
    return trees[0]


def _fragment_of(tree: Path) -> str:
    """tinyconfig's two fragments, then ours (a later line wins)."""
    parts = [
        tree / "kernel" / "configs" / "tiny.config",
        tree / "arch" / "x86" / "configs" / "tiny.config",
    ]
    return "".join(path.read_text() for path in parts) + FRAGMENT


def _keep(tree: Path, release: str, target: Path) -> Kernel:
    """Copy the outputs into ``target``, whole or not at all."""
    elf = (tree / "vmlinux").read_bytes()
    if not vmlinux.has_pvh_note(elf):
        raise BackendFailure(f"{tree / 'vmlinux'} has no PVH entry point note")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".kernel-") as tmp:
        partial = Path(tmp) / "out"
        partial.mkdir()
        shutil.copyfile(tree / "vmlinux", partial / "vmlinux")
        shutil.copyfile(tree / "arch" / "x86" / "boot" / "bzImage", partial / "bzImage")
        shutil.copyfile(tree / ".config", partial / "config")
        (partial / "release").write_text(release + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    return Kernel(target / "vmlinux", target / "bzImage", release, cached=False)
