"""The Debian guest's root filesystem after mmdebstrap: Tashi's files written, timers masked,
per-build files removed; and what the build reads from it (the packages installed, the kernel
and initramfs).

Plain file operations on the directory mmdebstrap made (``tashi.guestimage.debian``), no chroot:
masking a unit is the symlink to /dev/null that ``systemctl mask`` makes, and the package list
is read from dpkg's status file. The content comes from ``tashi.guestimage.debianfiles``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tashi.domain.errors import BackendFailure
from tashi.guestimage import debianfiles


@dataclass(frozen=True, slots=True, order=True)
class Package:
    """One installed package, as dpkg's status file lists it."""

    name: str
    version: str
    architecture: str

    def line(self) -> str:
        return f"{self.name}\t{self.version}\t{self.architecture}"

    def deb_name(self) -> str:
        """The file name apt gives its .deb (an epoch's colon is written ``%3a``)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def finish(root: Path) -> list[Package]:
    """Write the guest's files into ``root``, mask its timers, remove what differs from build to
    build; return the installed packages, sorted by name. (The times are clamped when the root
    disk is made: ``tashi.guestimage.steps.ext4_qcow2``.)"""
    for relative, text in debianfiles.FILES.items():
        _write(root / relative, text)
    for unit in debianfiles.MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for pattern in debianfiles.REMOVED:
        for path in root.glob(pattern):
            path.unlink()
    return installed(root)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()  # /etc/resolv.conf may be a link; the file replaces it, not its target
    path.write_text(text)
    path.chmod(0o644)


def installed(root: Path) -> list[Package]:
    """The packages dpkg's status file in ``root`` says are installed, sorted by name."""
    status = root / "var/lib/dpkg/status"
    packages = []
    for stanza in status.read_text().split("\n\n"):
        fields = dict(_fields(stanza))
        if fields.get("Status") == "install ok installed":
            packages.append(Package(fields["Package"], fields["Version"], fields["Architecture"]))
    if not packages:
        raise BackendFailure(f"{status} lists no installed package")
    return sorted(packages)


def _fields(stanza: str) -> list[tuple[str, str]]:
    pairs = []
    for line in stanza.splitlines():
        if line and not line[0].isspace():
            key, _, value = line.partition(":")
            pairs.append((key, value.strip()))
    return pairs


def prune_cache(cache: Path, packages: list[Package]) -> None:
    """Keep in ``cache`` only the .deb files of ``packages`` (and nothing mmdebstrap copied
    back besides them: apt's lock and partial downloads), so that it never grows."""
    wanted = {package.deb_name() for package in packages}
    for path in cache.iterdir():
        if path.name in wanted:
            continue
        if path.is_dir() and not path.is_symlink():
            for inner in path.iterdir():
                inner.unlink()
            path.rmdir()
        else:
            path.unlink()


def boot_files(root: Path) -> tuple[Path, Path]:
    """The kernel (a bzImage) and the initramfs in ``root``'s /boot: exactly one of each."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise BackendFailure(
            f"expected one boot/vmlinuz-* and one boot/initrd.img-* in the root filesystem,"
            f" found {[p.name for p in kernels]} and {[p.name for p in initrds]}"
        )
    return kernels[0], initrds[0]
