"""Module dependencies read from ELF ``.modinfo`` sections, and the load order they give."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tashi.domain.errors import BackendFailure
from tashi.guestimage import kmod


def _ko(path: Path, **info: str) -> Path:
    """A minimal ELF64 relocatable file with a .modinfo section, like a .ko has."""
    modinfo = b"".join(f"{key}={value}\0".encode() for key, value in info.items())
    names = b"\0.modinfo\0.shstrtab\0"
    shoff = 64 + len(modinfo) + len(names)
    header = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + b"\0" * 9, 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2,
    )  # fmt: skip

    def section(name: int, offset: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, 1, 0, 0, offset, size, 0, 0, 1, 0)

    sections = (
        b"\0" * 64 + section(1, 64, len(modinfo)) + section(10, 64 + len(modinfo), len(names))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + modinfo + names + sections)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> kmod.ModuleTree:
    root = tmp_path / "lib" / "modules" / "6.1.0-test-cloud-amd64"
    kernel = root / "kernel"
    _ko(kernel / "drivers/virtio/virtio_ring.ko", depends="", name="virtio_ring")
    _ko(kernel / "drivers/virtio/virtio.ko", depends="virtio_ring")
    _ko(kernel / "drivers/virtio/virtio_pci_modern_dev.ko", depends="")
    _ko(kernel / "drivers/virtio/virtio_pci.ko",
        depends="virtio_ring,virtio_pci_modern_dev,virtio")  # fmt: skip
    _ko(kernel / "net/core/failover.ko", depends="")
    _ko(kernel / "drivers/net/net_failover.ko", depends="failover")
    _ko(kernel / "drivers/net/virtio_net.ko", depends="virtio_ring,virtio,net_failover")
    _ko(kernel / "drivers/char/hw_random/virtio-rng.ko", depends="virtio,virtio_ring")
    _ko(kernel / "drivers/block/broken.ko", depends="not_there")
    (root / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n")
    return kmod.ModuleTree(root)


def test_modinfo_reads_the_section(tree: kmod.ModuleTree) -> None:
    info = kmod.modinfo(tree.root / "kernel/drivers/virtio/virtio_ring.ko")
    assert info == {"depends": "", "name": "virtio_ring"}
    assert kmod.depends(tree.root / "kernel/drivers/net/virtio_net.ko") == [
        "virtio_ring", "virtio", "net_failover",
    ]  # fmt: skip


def test_dependencies_load_first_and_once(tree: kmod.ModuleTree) -> None:
    plan = kmod.plan(tree, ["virtio_pci", "virtio_net", "ext4"], ["virtio_rng", "absent"])
    order = [name for name, _ in plan.load]
    assert order == [
        "virtio_ring", "virtio_pci_modern_dev", "virtio", "virtio_pci",
        "failover", "net_failover", "virtio_net", "virtio_rng",
    ]  # fmt: skip
    assert plan.builtin == ["ext4"]
    assert dict(plan.load)["virtio_rng"].name == "virtio-rng.ko"
    assert tree.version == "6.1.0-test-cloud-amd64"


def test_a_missing_required_module_is_a_backend_failure(tree: kmod.ModuleTree) -> None:
    with pytest.raises(BackendFailure, match="has no module virtio_blk"):
        kmod.plan(tree, ["virtio_blk"], [])
    with pytest.raises(BackendFailure, match="broken needs not_there"):
        kmod.plan(tree, ["broken"], [])


def test_a_file_that_is_not_elf_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.ko"
    bogus.write_bytes(b"MZ not a module")
    with pytest.raises(BackendFailure, match="not a 64-bit little-endian ELF"):
        kmod.modinfo(bogus)


def test_compressed_modules_are_refused_clearly(tree: kmod.ModuleTree) -> None:
    (tree.root / "kernel" / "drivers" / "virtio" / "virtio_mem.ko.zst").write_bytes(b"(\xb5/\xfd")
    with pytest.raises(BackendFailure, match="compressed kernel modules are not supported"):
        kmod.plan(tree, ["virtio_pci"], [])
