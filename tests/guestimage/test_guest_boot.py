"""The tiny guest boots under real QEMU (TCG): to its UP marker, to a DHCP lease, and powers off.

Each test boots ``var/images/tashi-tiny.qcow2`` through its own qcow2 overlay, so the image is
never written; the boot-to-marker times are printed at the end of the run.
"""

from __future__ import annotations

import time
from pathlib import Path

from tashi.guestimage import bootable, builder
from tashi.images import boot, markers
from tests.images.guests import SUBNET, PrivateNetwork, random_mac, require_programs, running

POWEROFF_TIMEOUT = 30.0


def _fingerprint(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def test_boots_from_its_root_disk_to_the_up_marker(
    tiny_image: Path, tmp_path: Path, boot_times: list[tuple[str, float]]
) -> None:
    require_programs("qemu-system-x86_64", "qemu-img")
    before = _fingerprint(tiny_image)
    with running(tiny_image, tmp_path) as guest:
        up, seconds = guest.wait_for(markers.UP)
    boot_times.append(("root disk, no NIC: TASHI-GUEST-UP", seconds))
    assert up.fields["root"] == "/dev/vda"
    assert up.hostname == "tashi"
    assert float(up.fields["uptime"]) > 0
    assert _fingerprint(tiny_image) == before, "the image must only be a backing file"
    assert not (tmp_path / "overlay.qcow2").exists()


def test_kernel_and_initrd_alone_boot_to_the_up_marker(
    tiny_image: Path, tmp_path: Path, boot_times: list[tuple[str, float]]
) -> None:
    require_programs("qemu-system-x86_64")
    with running(tiny_image, tmp_path, root_disk=False) as guest:
        up, seconds = guest.wait_for(markers.UP)
    boot_times.append(("initramfs only: TASHI-GUEST-UP", seconds))
    assert up.fields["root"] == "initramfs"
    assert "no root disk /dev/vda; staying in the initramfs" in guest.console()


def test_an_image_with_its_own_bootloader_boots_to_the_up_marker(
    tiny_image: Path, tmp_path: Path, boot_times: list[tuple[str, float]]
) -> None:
    require_programs("qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy", "syslinux")
    image = bootable.make_bootable(
        builder.bzimage_of(tiny_image),  # SYSLINUX needs the bzImage, not the ELF .kernel
        boot.sidecar(tiny_image, boot.INITRD_SUFFIX),
        tmp_path / "store" / "tashi-syslinux.qcow2",
    )
    assert boot.direct_boot_of(image) is None  # no sidecars: SeaBIOS, then SYSLINUX
    assert sorted(p.name for p in image.parent.iterdir()) == ["tashi-syslinux.qcow2"]
    with running(image, tmp_path / "guest") as guest:  # -drive if=virtio, no -kernel
        up, seconds = guest.wait_for(markers.UP)
    boot_times.append(("own bootloader (SYSLINUX): TASHI-GUEST-UP", seconds))
    assert up.fields["root"] == "initramfs"
    assert "SYSLINUX" in guest.console()


def test_dhcp_on_every_nic_answers_ping_and_powers_off_on_the_acpi_button(
    tiny_image: Path, tmp_path: Path, boot_times: list[tuple[str, float]]
) -> None:
    require_programs("qemu-system-x86_64", "qemu-img", "dnsmasq", "ip", "busybox")
    hostname = "tashi-vm1"
    leases = {random_mac(): (f"{SUBNET}.10", hostname), random_mac(): (f"{SUBNET}.11", hostname)}
    with (
        PrivateNetwork.create() as net,
        net.dhcp_server(leases, tmp_path / "dnsmasq") as dhcp_log,
    ):
        nics = [net.nic(mac) for mac in leases]
        with running(tiny_image, tmp_path / "guest", nics=nics) as guest:
            _, up_seconds = guest.wait_for(markers.UP)
            got = {}
            for iface in ("eth0", "eth1"):
                lease, seconds = guest.wait_for(markers.DHCP, iface=iface)
                got[iface] = (lease.ip, lease.hostname)
                boot_times.append((f"two NICs: TASHI-GUEST-DHCP {iface}", seconds))
            # eth0 is the first -device, so it has the first MAC and its address.
            assert got == dict(zip(["eth0", "eth1"], leases.values(), strict=True)), (
                dhcp_log.read_text()
            )
            for address, _ in leases.values():
                ping = net.ping(address)
                assert ping.returncode == 0, ping.stdout + ping.stderr
            pressed = time.monotonic()
            guest.powerdown()
            status = guest.wait_exit(POWEROFF_TIMEOUT)
            boot_times.append(("system_powerdown to qemu exit", time.monotonic() - pressed))
        boot_times.append(("two NICs: TASHI-GUEST-UP", up_seconds))
        assert status == 0
        assert [m.kind for m in markers.scan(guest.console())][-1] == markers.POWEROFF
