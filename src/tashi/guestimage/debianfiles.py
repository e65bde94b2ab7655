"""What Tashi's Debian guest holds besides Debian's packages, as data: the package list, the
files written into the root filesystem, the units masked and the kernel command line.

``tashi.guestimage.debian`` builds the image from these with mmdebstrap; ``docs/guest-image.md``
says why each setting is there. Kept apart from the build steps so that the guest can be read
in one place (as ``tashi.guestimage.guestfiles`` is for the tiny guest), and because its text is
part of the image's recipe: any change here rebuilds the image.

The guest: Debian 12 with systemd, cloud-init and OpenSSH; DHCP on its first NIC (ifupdown and
dhclient, which writes /etc/resolv.conf); cloud-init reads a NoCloud seed disk (label
``cidata``) when there is one, else the EC2 metadata service at http://169.254.169.254/ without
asking the platform to prove it is AWS; sshd takes keys only and every password is locked.
"""

from __future__ import annotations

SUITE = "bookworm"
# deb.debian.org, as the machines' own apt sources: snapshot.debian.org is not reachable here,
# so a build takes the archive's current versions, and the image's manifest records them.
SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# 2025-05-20 00:00 UTC, the snapshot date the machines' apt sources name: the time of every
# file the build writes or clamps, of the initramfs' files and of the filesystem itself.
SOURCE_DATE_EPOCH = 1747699200

# The variant "apt" is the Essential packages and apt; these come on top, with their
# dependencies only (no Recommends). isc-dhcp-client is also a dependency of cloud-init.
PACKAGES = (
    "systemd-sysv",
    "udev",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "e2fsprogs",
    "ifupdown",
    "isc-dhcp-client",
    "netbase",
    "ca-certificates",
    "cloud-init",
    "openssh-server",
    "sudo",
    "qemu-guest-agent",
)

# dpkg leaves these out of every package (man pages, documentation but its copyright files,
# translations, info pages), a rule kept in the image for the packages a user installs.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
)

# Tashi's guest command line (tashi.guestimage.builder.DEFAULT_CMDLINE, each option explained
# there) with net.ifnames=0, so that the first NIC is eth0 whatever its PCI slot.
CMDLINE = (
    "console=ttyS0 root=/dev/vda rw quiet cryptomgr.notests no_timer_check tsc=reliable"
    " pci=noacpi,nomsi noreplace-smp init_on_alloc=0 net.ifnames=0"
)

# Written before the packages are installed: the kernel's postinst builds the initramfs from it.
# Only the modules a Tashi VM's root disk needs (virtio-pci, virtio-blk; ext4 is built into the
# cloud kernel) instead of "most" of them; no resume device to look for.
SETUP_FILES: dict[str, str] = {
    "etc/initramfs-tools/conf.d/tashi.conf": "MODULES=list\nRESUME=none\n",
    "usr/share/initramfs-tools/modules.d/tashi": "virtio_pci\nvirtio_blk\n",
}

_CLOUD_CFG = """\
# Tashi's Debian guest (docs/guest-image.md).
# A NoCloud seed disk (a filesystem labelled cidata) when there is one, else the EC2-style
# metadata service; the Ec2 settings and the strict_id that lets it be tried are in
# 91_tashi_ec2.cfg, ds-identify's policy in /etc/cloud/ds-identify.cfg.
datasource_list: [ NoCloud, Ec2 ]
# ifupdown brings up the first NIC (/etc/network/interfaces); cloud-init writes no network.
network: {config: disabled}
# An RSA host key takes seconds of emulated CPU to make under TCG; ed25519 and ECDSA do not.
ssh_genkeytypes: [ed25519, ecdsa]
# C.UTF-8 needs no locale-gen (cloud-init's default, en_US.UTF-8, would run it at each boot).
locale: C.UTF-8
# 127.0.1.1 <hostname> in /etc/hosts, so that sudo and others resolve the instance's name.
manage_etc_hosts: true
# There is no GRUB to configure (the kernel is booted directly); probing for it took 1.5 s.
grub_dpkg: {enabled: false}
"""

# ds-identify reads strict_id from /etc/cloud/cloud.cfg.d/*ec2*.cfg only, hence the name.
_CLOUD_EC2_CFG = """\
# Tashi's metadata service answers EC2's API at 169.254.169.254 but is not AWS: cloud-init must
# try the Ec2 datasource without the platform check (DMI "Amazon EC2") that strict_id asks for.
datasource:
  Ec2:
    strict_id: false
    metadata_urls: [ "http://169.254.169.254" ]
"""

# With no NoCloud seed, ds-identify finds no datasource for certain and Ec2 (strict_id false)
# is only a "maybe": maybe=all keeps cloud-init enabled with it; without one, disabled.
_DS_IDENTIFY_CFG = "policy: search,found=all,maybe=all,notfound=disabled\n"

_SSHD_CONFIG = """\
# Tashi's Debian guest: keys only. Read before sshd_config's own settings, so these win.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
AuthenticationMethods publickey
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
"""

# cloud-init makes the host keys before sshd starts (cloud-init.service is Before=sshd.service);
# when cloud-init found no datasource and did not run, sshd still gets an ed25519 key.
_SSH_HOST_KEY_DROPIN = """\
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || \
ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
ExecStartPre=/usr/sbin/sshd -t
"""

_INTERFACES = """\
# Tashi's Debian guest: DHCP on the first NIC (eth0: net.ifnames=0 on the command line).
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
"""

# networking.service itself waits for eth0's lease (up to dhclient's 60 s); the wait-online
# service then only needs to see it. Without a NIC there is nothing to wait 300 s for.
_NETWORKING_DEFAULTS = "WAIT_ONLINE_TIMEOUT=10\n"

_HOSTS = """\
127.0.0.1\tlocalhost
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""

# No fsck (pass 0): the initramfs mounts the root read-write and ext4's journal makes it
# consistent; a check at every boot of a fresh overlay would cost emulated CPU for nothing.
_FSTAB = "/dev/vda\t/\text4\tdefaults,errors=remount-ro\t0\t0\n"

# Written after the packages are installed, replacing what mmdebstrap copied from the build
# machine (/etc/hostname, /etc/resolv.conf) and what packages wrote (/etc/network/interfaces).
FILES: dict[str, str] = {
    "etc/cloud/cloud.cfg.d/90_tashi.cfg": _CLOUD_CFG,
    "etc/cloud/cloud.cfg.d/91_tashi_ec2.cfg": _CLOUD_EC2_CFG,
    "etc/cloud/ds-identify.cfg": _DS_IDENTIFY_CFG,
    "etc/ssh/sshd_config.d/50-tashi.conf": _SSHD_CONFIG,
    "etc/systemd/system/ssh.service.d/tashi-host-key.conf": _SSH_HOST_KEY_DROPIN,
    "etc/network/interfaces": _INTERFACES,
    "etc/default/networking": _NETWORKING_DEFAULTS,
    "etc/default/locale": "LANG=C.UTF-8\n",
    "etc/hostname": "debian\n",
    "etc/hosts": _HOSTS,
    "etc/fstab": _FSTAB,
    "etc/resolv.conf": "# written by dhclient from eth0's lease\n",
}

# Timers that would start apt or a filesystem scrub in a freshly booted guest, where they
# compete with the user's own first work for an emulated CPU.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
)

# Removed from the root filesystem after the install: the host keys openssh-server's postinst
# made (every VM would share them; cloud-init makes each VM its own), and files that differ
# from build to build and are remade at boot.
REMOVED = (
    "etc/ssh/ssh_host_*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/alternatives.log",
    "var/log/apt/eipp.log.xz",
    "var/log/apt/term.log",
    "var/log/bootstrap.log",
)
