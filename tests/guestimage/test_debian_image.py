"""The Debian guest as built (``make debian-image``): its files, and a boot under real QEMU (TCG)
with a NoCloud seed, in which cloud-init runs the user-data and sshd lets in the seed's key, and
no password.

The guest boots through a qcow2 overlay on a tap in a network namespace of the test's own, with
dnsmasq giving it 198.18.7.10; ssh runs in the same namespace, so nothing leaves this machine
and the root namespace is never touched. The boot-to-user-data time is printed at the end.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from tashi.guestimage import debian, debianfiles, vmlinux
from tashi.images import boot
from tests.images.guests import SUBNET, PrivateNetwork, random_mac, require_programs, running

# Four Python processes of cloud-init under TCG: about 60 s alone on this machine's 2 cores.
BOOT_TIMEOUT = 300.0
SSH_TIMEOUT = 60.0
MEMORY_MB = 512
USER = "debian"  # cloud-init's default user on Debian
HOSTNAME = "tashi-deb1"
INSTANCE_ID = "i-0123456789abcdef0"
RAN = re.compile(r"TASHI-USER-DATA-RAN instance=(\S+) uptime=([0-9.]+)")


def test_the_image_is_debian_with_cloud_init_and_openssh_booted_directly(
    debian_image: Path,
) -> None:
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", debian_image],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    )
    assert info["format"] == "qcow2" and info["virtual-size"] == debian.DEFAULT_SIZE_MB << 20
    assert info["format-specific"]["data"]["compression-type"] == "zstd"
    manifest = debian_image.with_name(f".{debian_image.name}.manifest").read_text()
    packages = {line.split("\t")[0] for line in manifest.splitlines()}
    assert {"cloud-init", "openssh-server", "ifupdown", "qemu-guest-agent"} <= packages
    assert "usrmerge" not in packages and "perl" not in packages
    direct = boot.direct_boot_of(debian_image)
    assert direct is not None and direct.cmdline == debianfiles.CMDLINE
    assert vmlinux.has_pvh_note(direct.kernel.read_bytes())


def _seed(path: Path, public_key: str) -> Path:
    """A NoCloud seed: a FAT filesystem labelled CIDATA with meta-data and user-data (mtools:
    no mount)."""
    meta_data = f"instance-id: {INSTANCE_ID}\nlocal-hostname: {HOSTNAME}\n"
    user_data = (
        "#cloud-config\n"
        f"ssh_authorized_keys:\n  - {public_key}\n"
        "runcmd:\n"
        '  - echo "TASHI-USER-DATA-RAN instance=$(cat /var/lib/cloud/data/instance-id)'
        ' uptime=$(cut -d" " -f1 /proc/uptime)" | tee /run/tashi-user-data\n'
    )
    files = path.parent / "seed-files"
    files.mkdir(parents=True)
    (files / "meta-data").write_text(meta_data)
    (files / "user-data").write_text(user_data)
    with path.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    subprocess.run(["mkfs.vfat", "-n", "CIDATA", path], check=True, capture_output=True)
    for name in ("meta-data", "user-data"):
        subprocess.run(["mcopy", "-i", path, files / name, "::/"], check=True, capture_output=True)
    return path


def _ssh(
    net: PrivateNetwork, address: str, key: Path, command: str, *options: str
) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", net.netns, "ssh", "-i", str(key), "-o", "BatchMode=yes"]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    argv += ["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", *options]
    return subprocess.run([*argv, f"{USER}@{address}", command], capture_output=True, text=True)


def _ssh_until_it_answers(net: PrivateNetwork, address: str, key: Path) -> str:
    deadline = time.monotonic() + SSH_TIMEOUT
    while True:
        done = _ssh(net, address, key, "cat /run/tashi-user-data")
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, done.stderr
            return done.stdout
        time.sleep(1.0)


# ds-identify as it decides at boot, but shown a disk list without the seed (a fake blkid):
# with no NoCloud seed, Ec2 is still tried, without the AWS platform check.
_NO_SEED = r"""
mkdir -p /tmp/fake && printf '#!/bin/sh\necho DEVNAME=/dev/vda\necho TYPE=ext4\n' >/tmp/fake/blkid
chmod +x /tmp/fake/blkid && sudo -n env PATH=/tmp/fake:/usr/sbin:/usr/bin PATH_RUN=/tmp/di \
    DI_LOG=/tmp/di.log /usr/lib/cloud-init/ds-identify --force
sudo -n cat /tmp/di/cloud-init/cloud.cfg
"""


def test_cloud_init_runs_the_user_data_and_sshd_lets_in_its_key_only(
    debian_image: Path, tmp_path: Path, boot_times: list[tuple[str, float]]
) -> None:
    require_programs("qemu-system-x86_64", "qemu-img", "dnsmasq", "ip", "ssh", "ssh-keygen")
    require_programs("mkfs.vfat", "mcopy")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    seed = _seed(tmp_path / "seed" / "seed.img", (tmp_path / "id_ed25519.pub").read_text().strip())
    mac, address = random_mac(), f"{SUBNET}.10"
    with (
        PrivateNetwork.create() as net,
        net.dhcp_server({mac: (address, HOSTNAME)}, tmp_path / "dnsmasq"),
    ):
        nic = net.nic(mac)
        with running(
            debian_image, tmp_path / "guest", nics=[nic], memory_mb=MEMORY_MB, drives=[seed]
        ) as guest:
            ran, seconds = guest.wait_for_line(RAN.pattern, timeout=BOOT_TIMEOUT)
            boot_times.append(("Debian + cloud-init (NoCloud): user-data ran", seconds))
            assert ran[1] == INSTANCE_ID
            assert RAN.search(_ssh_until_it_answers(net, address, key))
            answered = time.monotonic() - guest.started
            boot_times.append(("Debian: first ssh login answered", answered))
            done = _ssh(net, address, key, "hostname; sudo -n true && echo sudo; ip -4 route; "
                        "cloud-init status --wait; sudo -n sshd -T")  # fmt: skip
            assert done.returncode == 0, done.stderr
            lines = done.stdout.splitlines()
            assert lines[:2] == [HOSTNAME, "sudo"], done.stdout
            assert any(line.startswith(f"default via {SUBNET}.1 dev eth0") for line in lines)
            assert "status: done" in lines, done.stdout  # after a line of dots while it waits
            assert {"passwordauthentication no", "kbdinteractiveauthentication no"} <= set(lines)
            assert "authenticationmethods publickey" in lines
            refused = _ssh(net, address, key, "true", "-o", "PubkeyAuthentication=no")
            assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
            undecided = _ssh(net, address, key, _NO_SEED)
            assert undecided.returncode == 0, undecided.stderr
            assert "datasource_list: [ Ec2, None ]" in undecided.stdout
            assert 'strict_id: "false"' in undecided.stdout
        assert "BEGIN SSH HOST KEY KEYS" in guest.console()
