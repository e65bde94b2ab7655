"""``tashi-image build``: a build into an empty image store, its outputs, idempotence, --force,
with Tashi's own kernel (the default) and with Debian's cloud kernel (``--kernel debian``).

The builds reuse the .deb files and the compiled kernel the session's ``tiny_image`` fixture left
in its cache (``--cache``), so they exercise everything a clean machine does except the download
and the kernel's compilation (which ``tiny_image`` itself does on a clean machine).
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from tashi.domain.errors import BackendFailure, InvalidInput
from tashi.guestimage import builder, cli, vmlinux
from tashi.images import boot
from tashi.images.store import ImageStore

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def built(tiny_image: Path, tmp_path_factory: pytest.TempPathFactory) -> builder.BuildOptions:
    prefix = tmp_path_factory.mktemp("vfs")
    options = builder.BuildOptions(
        out_dir=prefix / "images", cache_dir=tiny_image.parent / ".cache" / "debs"
    )
    lines: list[str] = []
    result = builder.build(options, say=lines.append)
    assert result.built, lines
    assert not any("downloaded" in line for line in lines), "the cache should have served"
    assert any("Linux 6." in line and ": cached " in line for line in lines), lines
    assert result.modules == []  # all built in
    return options


@pytest.fixture(scope="module")
def debian(tiny_image: Path, tmp_path_factory: pytest.TempPathFactory) -> builder.BuildOptions:
    prefix = tmp_path_factory.mktemp("vfs")
    options = builder.BuildOptions(
        out_dir=prefix / "images",
        cache_dir=tiny_image.parent / ".cache" / "debs",
        kernel=builder.DEBIAN_KERNEL,
    )
    lines: list[str] = []
    result = builder.build(options, say=lines.append)
    assert result.built, lines
    assert result.modules[-2:] == ["button", "evdev"]
    return options


def _initramfs(image: Path) -> tuple[list[str], str]:
    """The names in an image's initramfs and its /etc/tashi/modules."""
    archive = gzip.decompress(boot.sidecar(image, ".initrd").read_bytes())
    names = (
        subprocess.run(["cpio", "-it", "--quiet"], input=archive, capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    listing = subprocess.run(
        ["cpio", "-i", "--to-stdout", "--quiet", "etc/tashi/modules"],
        input=archive, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    return names, listing


def test_the_store_holds_the_image_and_its_sidecars(built: builder.BuildOptions) -> None:
    store = ImageStore(built.out_dir.parent)
    listed = {image.name: image for image in store.list()}
    assert set(listed) == {"tashi-tiny.qcow2"}  # the sidecars belong to it; not listed
    for suffix in (".kernel", ".initrd", ".cmdline"):
        assert (built.out_dir / f"tashi-tiny.qcow2{suffix}").is_file()
    image = listed["tashi-tiny.qcow2"]
    assert (image.format, image.virtual_size) == ("qcow2", 64 * MIB)
    assert image.size < 8 * MIB
    direct = boot.direct_boot_of(built.image)
    assert direct is not None
    assert direct.cmdline == builder.DEFAULT_CMDLINE
    assert direct.cmdline.startswith("console=ttyS0 root=/dev/vda rw quiet ")
    # Only the recipe stamp, the lock and the bzImage are left beside them: no build directory.
    hidden = sorted(p.name for p in built.out_dir.iterdir() if p.name.startswith("."))
    assert hidden == [".tashi-tiny.lock", ".tashi-tiny.qcow2.bzimage", ".tashi-tiny.qcow2.recipe"]


def test_the_kernel_is_tashis_elf_vmlinux_with_a_pvh_entry_and_its_bzimage(
    built: builder.BuildOptions, tmp_path: Path
) -> None:
    kernel = boot.sidecar(built.image, boot.KERNEL_SUFFIX).read_bytes()
    assert kernel.startswith(b"\x7fELF") and vmlinux.has_pvh_note(kernel)
    assert len(kernel) < 32 * MIB  # Debian's cloud vmlinux is about 51 MiB
    bzimage = builder.bzimage_of(built.image)
    assert vmlinux.is_bzimage(bzimage)
    assert vmlinux.extract_pvh(bzimage, tmp_path / "vmlinux").ok  # the same kernel, compressed
    assert bzimage.stat().st_size < len(kernel) / 2


def test_tashis_initramfs_has_the_userland_and_no_modules(built: builder.BuildOptions) -> None:
    names, listing = _initramfs(built.image)
    assert {"init", "dev/console", "bin/busybox", "sbin/init", "etc/udhcpc.script"} <= set(names)
    assert listing == ""
    assert not any(name.startswith("lib/modules/") for name in names)


def test_debians_kernel_is_its_elf_vmlinux_and_the_bzimage_as_it_came(
    debian: builder.BuildOptions, tmp_path: Path
) -> None:
    kernel = boot.sidecar(debian.image, boot.KERNEL_SUFFIX).read_bytes()
    assert kernel.startswith(b"\x7fELF") and vmlinux.has_pvh_note(kernel)  # Debian: CONFIG_PVH
    bzimage = builder.bzimage_of(debian.image)
    assert vmlinux.is_bzimage(bzimage)
    assert vmlinux.extract_pvh(bzimage, tmp_path / "vmlinux").ok
    assert (tmp_path / "vmlinux").read_bytes() == kernel
    assert bzimage.stat().st_size < len(kernel) / 2  # compressed: about 14 MB against 53 MB


def test_debians_initramfs_loads_the_modules_in_dependency_order(
    debian: builder.BuildOptions,
) -> None:
    names, listing = _initramfs(debian.image)
    assert {"init", "dev/console", "bin/busybox", "sbin/init", "etc/udhcpc.script"} <= set(names)
    order = [Path(line).name.removesuffix(".ko") for line in listing.split()]
    assert set(order) >= {"virtio", "virtio_ring", "virtio_pci", "failover", "net_failover",
                          "virtio_net", "virtio_blk", "button", "evdev"}  # fmt: skip
    for before, after in [("virtio_ring", "virtio"), ("virtio", "virtio_pci"),
                          ("failover", "net_failover"), ("net_failover", "virtio_net"),
                          ("virtio", "virtio_blk")]:  # fmt: skip
        assert order.index(before) < order.index(after)
    for module in listing.split():
        assert f"lib/modules/{module}" in names


def test_the_two_kernels_are_two_recipes(
    built: builder.BuildOptions, debian: builder.BuildOptions
) -> None:
    assert built.recipe() != debian.recipe()
    assert builder.BuildOptions(out_dir=built.out_dir, kernel="debian").recipe() != built.recipe()


def test_an_unknown_kernel_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidInput, match="tashi, debian"):
        builder.BuildOptions(out_dir=tmp_path, kernel="vmlinuz")
    with pytest.raises(SystemExit) as exited:
        cli.main(["build", "--out", str(tmp_path), "--kernel", "vmlinuz"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_building_again_does_nothing_and_force_rebuilds(
    built: builder.BuildOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    before = built.image.stat().st_ino
    args = ["build", "--out", str(built.out_dir), "--cache", str(built.cache)]
    assert cli.main(args) == 0
    assert "already built" in capsys.readouterr().out
    assert built.image.stat().st_ino == before

    assert cli.main([*args, "--force"]) == 0
    out = capsys.readouterr().out
    assert "built " in out and " s\n" in out
    assert built.image.stat().st_ino != before  # renamed into place, not rewritten
    assert built.is_current()


def test_a_changed_recipe_is_not_current(built: builder.BuildOptions) -> None:
    other = builder.BuildOptions(out_dir=built.out_dir, cmdline="console=ttyS0 root=/dev/vda")
    assert builder.is_complete(other.image)
    assert not other.is_current()


def test_a_name_that_is_a_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        builder.build(builder.BuildOptions(out_dir=tmp_path, name="../evil"))
    assert list(tmp_path.iterdir()) == []


def test_the_cli_reports_a_failure_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no mke2fs
    assert cli.main(["build", "--out", str(tmp_path / "images")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tashi-image: error: apt-get is not installed")
    assert err.count("\n") == 1


def test_an_image_without_its_bzimage_says_to_build_again(tmp_path: Path) -> None:
    with pytest.raises(BackendFailure, match="build it again"):
        builder.bzimage_of(tmp_path / "tashi-tiny.qcow2")
