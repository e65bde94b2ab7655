"""The console markers' parser and the direct-boot sidecar convention."""

from __future__ import annotations

from pathlib import Path

from tashi.images import boot, markers


def test_markers_are_found_even_after_a_prompt() -> None:
    log = (
        "Booting from ROM...\r\n"
        "TASHI-GUEST-UP hostname=tashi root=/dev/vda uptime=2.15\r\n"
        "tashi:/# TASHI-GUEST-DHCP eth0 198.18.7.10 hostname=vm1 uptime=2.61\r\n"
        "TASHI-GUEST-DHCP eth1 198.18.8.10 hostname=vm1 uptime=2.70\n"
        "echo TASHI-GUEST-DHCP eth0\n"
        "TASHI-GUEST-POWEROFF reason=acpi uptime=9.00\n"
    )
    found = markers.scan(log)
    assert [(m.kind, m.iface, m.ip) for m in found] == [
        (markers.UP, None, None),
        (markers.DHCP, "eth0", "198.18.7.10"),
        (markers.DHCP, "eth1", "198.18.8.10"),
        (markers.POWEROFF, None, None),
    ]
    assert found[0].hostname == "tashi"
    assert found[0].fields == {"hostname": "tashi", "root": "/dev/vda", "uptime": "2.15"}
    assert found[1].hostname == "vm1"
    assert markers.parse("nothing here") is None
    assert markers.parse("TASHI-GUEST-UP 198.18.7.10 eth0") is None


def test_an_image_without_a_kernel_boots_from_its_bootloader(tmp_path: Path) -> None:
    image = tmp_path / "cloud.qcow2"
    image.write_bytes(b"QFI\xfb")
    assert boot.direct_boot_of(image) is None


def test_an_image_with_sidecars_boots_directly(tmp_path: Path) -> None:
    image = tmp_path / "tiny.qcow2"
    image.write_bytes(b"QFI\xfb")
    boot.sidecar(image, boot.KERNEL_SUFFIX).write_bytes(b"kernel")
    direct = boot.direct_boot_of(image)
    assert direct == boot.DirectBoot(tmp_path / "tiny.qcow2.kernel", None, None)
    assert direct.qemu_args() == ["-kernel", str(tmp_path / "tiny.qcow2.kernel")]

    boot.sidecar(image, boot.INITRD_SUFFIX).write_bytes(b"initrd")
    boot.sidecar(image, boot.CMDLINE_SUFFIX).write_text("console=ttyS0\n  root=/dev/vda rw\n")
    direct = boot.direct_boot_of(image)
    assert direct is not None
    assert direct.qemu_args() == [
        "-kernel", f"{image}.kernel", "-initrd", f"{image}.initrd",
        "-append", "console=ttyS0 root=/dev/vda rw",
    ]  # fmt: skip
    assert [boot.is_sidecar(p.name) for p in sorted(tmp_path.iterdir())] == [
        False, True, True, True,
    ]  # fmt: skip
