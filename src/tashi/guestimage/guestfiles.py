"""The tiny guest's own files: its init scripts, DHCP hook, ACPI handler and /etc.

Two programs run as PID 1, one after the other:

* ``/init`` of the initramfs mounts proc, sys and devtmpfs, ``insmod``s the modules listed in
  ``/etc/tashi/modules`` (dependencies first), mounts the root disk (``root=``, default
  ``/dev/vda``, ext4) and ``switch_root``s into it. Without a root disk it stays in the initramfs,
  which carries the same userland, so a kernel and initrd alone boot to the same markers.
* busybox ``init`` then reads ``/etc/inittab``: ``/etc/init.d/rcS`` starts ``acpid`` (the ACPI power
  button runs ``/etc/acpi/PWRF/00000080``, which powers off), starts ``udhcpc`` in the background on
  every ``eth*`` NIC, prints the ``TASHI-GUEST-UP`` marker, and a shell runs on the console.

Once ``UP`` is out, rcS makes ``/etc/tashi/hotplug`` the kernel's uevent helper: a disk
hot-plugged into the running VM or taken out of it (a volume, EC2's AttachVolume and
DetachVolume) prints a ``TASHI-GUEST-DISK`` marker.

``/etc/udhcpc.script`` configures address, routes, hostname and resolv.conf from each lease and
prints ``TASHI-GUEST-DHCP``; eth0's first lease starts ``/etc/tashi/metadata``, which reads the
guest's instance id and user data from the instance metadata service (169.254.169.254),
prints ``TASHI-GUEST-METADATA`` and runs user data that starts with ``#!``. At boot,
``/etc/tashi/nocloud`` prints ``TASHI-GUEST-NOCLOUD`` with the instance id of a NoCloud seed
disk (volume ``cidata``) if the VM has one. Marker formats: ``tashi.images.markers`` (and
``docs/guest-image.md``). The builder (``tashi.guestimage.builder``) writes these texts into
both trees with ``files()``.
"""

from __future__ import annotations

DEFAULT_HOSTNAME = "tashi"

# Shell helpers shared by rcS, the DHCP hook and the ACPI handler.
FUNCTIONS = r"""# Sourced by the Tashi guest scripts.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

# Print a marker line on the serial console, and on the system console when that is another
# device; the leading newline keeps a marker off a line the shell prompt has started.
# Shell builtins only (no $(...), no programs): every process costs milliseconds under TCG.
say() {
    printf '\n%s\n' "$*" >/dev/ttyS0 2>/dev/null
    active=
    read -r active </sys/class/tty/console/active 2>/dev/null
    case "$active" in
        *ttyS0*) ;;
        *) printf '\n%s\n' "$*" >/dev/console 2>/dev/null ;;
    esac
}

uptime_s() {
    read -r up _ </proc/uptime
    echo "$up"
}
"""

INIT = r"""#!/bin/sh
# Tashi tiny guest, initramfs: load the virtio drivers, then boot the root disk if there is one.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

while read -r module; do
    insmod "/lib/modules/$module" || echo "tashi-init: insmod $module failed" >/dev/console
done </etc/tashi/modules

root=/dev/vda
rootfstype=ext4
mode=rw
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
        rootfstype=*) rootfstype="${arg#rootfstype=}" ;;
        ro) mode=ro ;;
        rw) mode=rw ;;
    esac
done

if [ -b "$root" ] && mount -t "$rootfstype" -o "$mode" "$root" /newroot; then
    if [ -x /newroot/sbin/init ]; then
        for fs in proc sys dev; do
            mount --move "/$fs" "/newroot/$fs"
        done
        exec switch_root /newroot /sbin/init
    fi
    echo "tashi-init: $root has no /sbin/init; staying in the initramfs" >/dev/console
    umount /newroot
else
    echo "tashi-init: no root disk $root; staying in the initramfs" >/dev/console
fi
exec /sbin/init
"""

INITTAB = """# busybox init: see /etc/init.d/rcS
::sysinit:/etc/init.d/rcS
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
"""

RCS = r"""#!/bin/sh
# Tashi tiny guest: system start. DHCP runs in the background so the UP marker never waits for it.
. /etc/tashi/functions

[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/class ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -a  # /etc/fstab: /dev/pts, /run, /tmp
hostname -F /etc/hostname
ip link set lo up

# The ACPI power button (QMP system_powerdown) runs /etc/acpi/PWRF/00000080.
acpid -l /run/acpid.log

for path in /sys/class/net/eth*; do
    [ -e "$path" ] || continue
    iface="${path##*/}"
    ip link set "$iface" up
    udhcpc -f -i "$iface" -s /etc/udhcpc.script -T 1 -t 5 -A 3 -p "/run/udhcpc.$iface.pid" \
        >"/run/udhcpc.$iface.log" 2>&1 &
done

root=
while read -r dev point _; do
    [ "$point" = / ] && root="$dev"
done </proc/mounts
[ "$root" = rootfs ] || [ "$root" = none ] && root=initramfs
read -r name </proc/sys/kernel/hostname
read -r up _ </proc/uptime
say "TASHI-GUEST-UP hostname=$name root=$root uptime=$up"

# A NoCloud seed disk, if the VM has one besides its root (/dev/vdb, ...).
[ -e /sys/block/vdb ] && /etc/tashi/nocloud </dev/null >/dev/null 2>&1 &

# From now on a disk that comes or goes (a volume) is told on the console.
echo /etc/tashi/hotplug >/proc/sys/kernel/hotplug
"""

HOTPLUG = r"""#!/bin/sh
# The kernel's uevent helper once the guest is up (rcS): a disk plugged into the running VM or
# taken out of it prints TASHI-GUEST-DISK (its size in bytes). Every other event ends here.
[ "$SUBSYSTEM" = block ] && [ "$DEVTYPE" = disk ] || exit 0
. /etc/tashi/functions
name="${DEVNAME:-${DEVPATH##*/}}"
case "$ACTION" in
    add)
        sectors=0
        read -r sectors <"/sys/block/$name/size"
        say "TASHI-GUEST-DISK action=add name=$name size=$((sectors * 512)) uptime=$(uptime_s)"
        ;;
    remove) say "TASHI-GUEST-DISK action=remove name=$name uptime=$(uptime_s)" ;;
esac
"""

RCK = r"""#!/bin/sh
# Tashi tiny guest: system stop (busybox init runs this before it kills everything and powers off).
sync
umount -a -r 2>/dev/null
exit 0
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc hook: configure the interface from the lease and print a TASHI-GUEST-DHCP marker.
. /etc/tashi/functions
state="/run/udhcpc.$interface.ip"

case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        rm -f "$state"
        ;;
    bound|renew)
        old="$(cat "$state" 2>/dev/null)"
        if [ "$old" != "$ip" ]; then
            ip -4 addr flush dev "$interface"
            ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        fi
        if [ -n "$router" ]; then
            # One default route per NIC; the interface index keeps their metrics apart.
            metric="$(cat "/sys/class/net/$interface/ifindex")"
            while ip route del default dev "$interface" 2>/dev/null; do :; done
            for gateway in $router; do
                ip route add default via "$gateway" dev "$interface" metric "$metric" && break
            done
        fi
        # NIC 0's lease names the guest (the DhcpDns hook names NIC i <name>-nic<i>). Only
        # eth0's: the hooks of several NICs run at once, so any "first one wins" would race.
        [ -n "$hostname" ] && [ "$interface" = eth0 ] && hostname "$hostname"
        if [ -n "$dns" ] || [ -n "$domain" ]; then
            {
                [ -n "$domain" ] && echo "search $domain"
                for server in $dns; do echo "nameserver $server"; done
            } >/etc/resolv.conf
        fi
        if [ "$old" != "$ip" ]; then
            echo "$ip" >"$state"
            # The name this lease gave (eth0's is the guest's own), else the guest's.
            name="${hostname:-$(hostname)}"
            say "TASHI-GUEST-DHCP $interface $ip hostname=$name uptime=$(uptime_s)"
        fi
        # eth0's first lease: read the instance metadata (once, in the background).
        if [ "$interface" = eth0 ] && [ ! -e /run/tashi-metadata ]; then
            : >/run/tashi-metadata
            /etc/tashi/metadata </dev/null >/dev/null 2>&1 &
        fi
        ;;
esac
exit 0
"""

METADATA = r"""#!/bin/sh
# After eth0's lease: this guest's instance id and user data from the instance metadata service
# (EC2's, served by the node manager), printed on the console, then user data that is a script
# run. Retried for about 30 s: the service answers once the VM's host serves it (at once,
# normally).
. /etc/tashi/functions
url=http://169.254.169.254/latest
id=
tries=0
while [ -z "$id" ] && [ "$tries" -lt 30 ]; do
    # timeout, not wget -T: busybox 1.35's static wget crashes (SIGSEGV) with -T.
    id="$(timeout 5 wget -q -O - "$url/meta-data/instance-id" 2>/dev/null)" || id=
    tries=$((tries + 1))
    [ -n "$id" ] || sleep 1
done
if [ -z "$id" ]; then
    say "TASHI-GUEST-METADATA none uptime=$(uptime_s)"
    exit 0
fi
sum=none
first=
if timeout 5 wget -q -O /run/user-data "$url/user-data" 2>/dev/null; then
    sum="$(sha256sum </run/user-data)"
    sum="${sum%% *}"
    IFS= read -r first </run/user-data
fi
say "TASHI-GUEST-METADATA instance-id=$id uptime=$(uptime_s) user-data-sha256=$sum user-data=$first"
# User data that is a script runs, as cloud-init runs it (its output: /run/user-data.log).
case "$first" in
    '#!'*) chmod 700 /run/user-data && exec /run/user-data </dev/null >/run/user-data.log 2>&1 ;;
esac
"""

NOCLOUD = r"""#!/bin/sh
# At boot: a NoCloud seed disk (an ISO 9660 volume "cidata", which this kernel does not mount)
# is read raw: its meta-data's instance-id line, printed on the console.
. /etc/tashi/functions
for block in /sys/block/vd*; do
    dev="/dev/${block##*/}"
    [ -b "$dev" ] || continue
    label="$(dd if="$dev" bs=1 skip=32808 count=6 2>/dev/null)"
    [ "$label" = cidata ] || continue
    line="$(tr '\000' '\n' <"$dev" | grep -m 1 '^instance-id: ')"
    say "TASHI-GUEST-NOCLOUD device=$dev instance-id=${line#instance-id: } uptime=$(uptime_s)"
done
"""

ACPI_POWER_BUTTON = r"""#!/bin/sh
# busybox acpid runs this on the ACPI power button (QEMU's system_powerdown): power off cleanly.
. /etc/tashi/functions
say "TASHI-GUEST-POWEROFF reason=acpi uptime=$(uptime_s)"
exec poweroff
"""

# rcS mounts these with one `mount -a` (proc, sys and dev come from the initramfs).
FSTAB = """devpts /dev/pts devpts defaults 0 0
tmpfs /run tmpfs defaults 0 0
tmpfs /tmp tmpfs defaults 0 0
"""

PROFILE = r"""export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PS1='\h:\w\$ '
"""


def files(release: str, hostname: str = DEFAULT_HOSTNAME) -> dict[str, tuple[str, int]]:
    """The guest's configuration files: relative path → (text, permissions)."""
    return {
        "etc/tashi/functions": (FUNCTIONS, 0o644),
        "etc/tashi/release": (release, 0o644),
        "etc/inittab": (INITTAB, 0o644),
        "etc/init.d/rcS": (RCS, 0o755),
        "etc/init.d/rcK": (RCK, 0o755),
        "etc/udhcpc.script": (UDHCPC_SCRIPT, 0o755),
        "etc/tashi/metadata": (METADATA, 0o755),
        "etc/tashi/nocloud": (NOCLOUD, 0o755),
        "etc/tashi/hotplug": (HOTPLUG, 0o755),
        "etc/acpi/PWRF/00000080": (ACPI_POWER_BUTTON, 0o755),
        "etc/profile": (PROFILE, 0o644),
        "etc/hostname": (hostname + "\n", 0o644),
        "etc/hosts": ("127.0.0.1 localhost\n", 0o644),
        "etc/fstab": (FSTAB, 0o644),
        "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\n", 0o644),
        "etc/group": ("root:x:0:\n", 0o644),
        "etc/resolv.conf": ("", 0o644),
    }


# Empty directories every tree needs (mount points and scratch).
DIRECTORIES = ("proc", "sys", "dev", "run", "tmp", "root", "var/log", "mnt")
