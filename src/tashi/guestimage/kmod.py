"""Kernel modules of an unpacked Debian kernel package: which to load, and in which order.

Debian's ``linux-image-*`` packages ship no ``modules.dep`` (``depmod`` makes it at install time)
and this builder installs nothing on the host, so dependencies are read the way ``modinfo`` reads
them: from the ``depends=`` string of each module's ELF ``.modinfo`` section. ``modules.builtin``
tells which wanted modules are compiled into the kernel and need no loading (Debian 12's cloud
kernel has ext4, jbd2, mbcache, crc16 and crc32c built in; the virtio drivers are modules).

Pure apart from reading files; used by ``tashi.guestimage.builder``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from tashi.domain.errors import BackendFailure

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1


@dataclass(frozen=True, slots=True)
class ModuleTree:
    """``lib/modules/<version>`` of an unpacked kernel package."""

    root: Path

    @property
    def version(self) -> str:
        return self.root.name

    def builtin(self) -> set[str]:
        """Names of the modules compiled into the kernel (from ``modules.builtin``)."""
        listing = self.root / "modules.builtin"
        if not listing.is_file():
            return set()
        return {_name_of(Path(line)) for line in listing.read_text().split() if line}

    def files(self) -> dict[str, Path]:
        """Every loadable module of the tree by module name (``virtio-rng.ko``: ``virtio_rng``)."""
        found: dict[str, Path] = {}
        for path in sorted((self.root / "kernel").rglob("*.ko*")):
            if path.suffix != ".ko":
                # Debian 12 ships plain .ko files; a kernel with .ko.xz/.ko.zst would need them
                # unpacked first, which this builder does not do yet.
                raise BackendFailure(f"compressed kernel modules are not supported: {path.name}")
            found.setdefault(_name_of(path), path)
        return found


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What the initramfs must do: ``load`` in this order, ``builtin`` needs nothing."""

    load: list[tuple[str, Path]]
    builtin: list[str]


def plan(tree: ModuleTree, required: list[str], optional: list[str]) -> LoadPlan:
    """The modules to ``insmod``, dependencies first, for ``required`` and ``optional`` names.

    A required module neither built in nor in the tree is a ``BackendFailure``; an optional one is
    skipped. Dependencies always come before their users; the order is otherwise the order given.
    """
    builtin = tree.builtin()
    files = tree.files()
    missing = [name for name in required if name not in builtin and name not in files]
    if missing:
        raise BackendFailure(
            f"kernel {tree.version} has no module {', '.join(missing)} (not built in either)"
        )
    order: list[str] = []
    skipped: list[str] = []
    for name in [*required, *optional]:
        if name in builtin:
            skipped.append(name)
        elif name in files:
            _visit(name, files, builtin, order, [])
    return LoadPlan(load=[(name, files[name]) for name in order], builtin=skipped)


def _visit(
    name: str, files: dict[str, Path], builtin: set[str], order: list[str], stack: list[str]
) -> None:
    if name in order or name in builtin:
        return
    if name in stack:
        raise BackendFailure(f"kernel modules depend on each other in a cycle: {[*stack, name]}")
    if name not in files:
        raise BackendFailure(f"kernel module {stack[-1]} needs {name}, which is not in the package")
    for dependency in depends(files[name]):
        _visit(dependency, files, builtin, order, [*stack, name])
    order.append(name)


def depends(module: Path) -> list[str]:
    """The ``depends=`` names of a ``.ko`` file, as ``modinfo -F depends`` prints them."""
    values = modinfo(module).get("depends", "")
    return [name for name in values.split(",") if name]


def modinfo(module: Path) -> dict[str, str]:
    """The ``key=value`` strings of a module's ``.modinfo`` section (the first value of a key)."""
    data = module.read_bytes()
    section = _elf_section(data, b".modinfo", module)
    info: dict[str, str] = {}
    for item in section.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            info.setdefault(key.decode(errors="replace"), value.decode(errors="replace"))
    return info


def _elf_section(data: bytes, wanted: bytes, path: Path) -> bytes:
    if data[:4] != _ELF_MAGIC or data[4] != _ELFCLASS64 or data[5] != _ELFDATA2LSB:
        raise BackendFailure(f"{path} is not a 64-bit little-endian ELF kernel module")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        (name_offset,) = struct.unpack_from("<I", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name_offset, offset, size

    _, names_at, _ = header(shstrndx)
    for index in range(shnum):
        name_offset, offset, size = header(index)
        start = names_at + name_offset
        if data[start : data.index(b"\0", start)] == wanted:
            return data[offset : offset + size]
    raise BackendFailure(f"{path} has no {wanted.decode()} section")


def _name_of(path: Path) -> str:
    name = path.name
    for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")
