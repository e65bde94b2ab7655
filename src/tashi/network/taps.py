"""What every driver that makes taps shares: tap names, ownership marks, attach and detach.

Names. ``tap_name(instance, nic)`` is the original ``tashi<instanceId>.<nic>`` when that fits in
the kernel's 15 characters (instance ids below 10^8 with a one-digit NIC), and otherwise ``tsh``
followed by 12 hex digits of a digest of both numbers: still deterministic, still recognisable,
always 15 characters.

Marks. A tap a driver made carries an alias (``ip link`` shows it) that says whose it is:
``tashi-nic instance=12 nic=0 network=7 mac=52:54:00:12:34:56``. The kernel keeps it as long
as the tap exists, so a node manager started again finds its taps without any file of its own,
and a tap with a digest name still says which instance it belongs to. Bridges a driver created
carry ``tashi-bridge network=<id>``.

The functions taking a ``Netlink`` are blocking and run on the driver's netlink thread
(``AsyncNetlink.run``); ``bridge.py`` uses them today, and a ``vxlan`` driver (one bridge plus one
VXLAN device per network) differs from it only in how the bridge of a network comes to be.
"""

from __future__ import annotations

import hashlib
import logging
import re

from tashi.domain import validation
from tashi.domain.errors import BackendFailure, InvalidInput
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import MAX_NICS
from tashi.network.base import MAX_NETWORK_ID, Attachment
from tashi.network.netlink import IFNAMSIZ, Link, Netlink

log = logging.getLogger(__name__)

_NIC_MARK = re.compile(
    r"tashi-nic instance=(\d+) nic=(\d+) network=(\d+) mac=([0-9a-f]{2}(?::[0-9a-f]{2}){5})"
)


def tap_name(instance_id: InstanceId, nic_index: int) -> str:
    """The deterministic name of NIC ``nic_index`` of ``instance_id`` (at most 15 chars)."""
    name = f"tashi{instance_id}.{nic_index}"
    if len(name) <= IFNAMSIZ:
        return name
    digest = hashlib.blake2b(f"{instance_id}.{nic_index}".encode(), digest_size=6)
    return f"tsh{digest.hexdigest()}"


def tap_names(instance_id: InstanceId) -> set[str]:
    """Every name a NIC of ``instance_id`` can have."""
    return {tap_name(instance_id, index) for index in range(MAX_NICS)}


def check(instance_id: InstanceId, nic_index: int, network_id: NetworkId, mac: str) -> str:
    """Refuse arguments no driver can honour; returns the MAC normalised (lower case)."""
    if instance_id < 0:
        raise InvalidInput(f"instance id {instance_id} is negative")
    if not 0 <= nic_index < MAX_NICS:
        raise InvalidInput(f"NIC index {nic_index} is outside 0 to {MAX_NICS - 1}")
    check_network(network_id)
    return validation.mac(mac)


def check_network(network_id: NetworkId) -> None:
    if not 0 <= network_id <= MAX_NETWORK_ID:
        raise InvalidInput(f"network id {network_id} is outside 0 to {MAX_NETWORK_ID}")


def nic_mark(attachment: Attachment) -> str:
    a = attachment
    return (
        f"tashi-nic instance={a.instance_id} nic={a.nic_index} network={a.network_id} mac={a.mac}"
    )


def bridge_mark(network_id: NetworkId) -> str:
    return f"tashi-bridge network={network_id}"


def parse_mark(link: Link) -> Attachment | None:
    """The NIC a link was made for, if a Tashi driver made it."""
    match = _NIC_MARK.fullmatch(link.alias or "")
    if match is None:
        return None
    instance, nic, network, mac = match.groups()
    return Attachment(InstanceId(int(instance)), int(nic), NetworkId(int(network)), mac, link.name)


def tap_mac(guest_mac: str) -> str:
    """The tap's own MAC: the guest's with the first octet 0xfe. A bridge takes the lowest MAC
    of its ports as its own; 0xfe keeps a tap from ever being that, so the bridge's address does
    not change as VMs come and go (libvirt does the same)."""
    return "fe" + guest_mac[2:]


def plug(nl: Netlink, attachment: Attachment, bridge: Link) -> None:
    """Make (or reuse) the tap of ``attachment``, marked, up and a port of ``bridge``."""
    tap = nl.find(attachment.tap)
    if tap is None:
        tap = nl.add_tap(attachment.tap)
    elif tap.kind != "tun":
        raise BackendFailure(
            f"link {attachment.tap} exists but is a {tap.kind or 'device'}, not a tap;"
            " Tashi uses that name for its NIC"
        )
    # The bridge's MTU, so that a new port does not lower the bridge's; then mark, then up.
    nl.set(
        attachment.tap,
        alias=nic_mark(attachment),
        address=tap_mac(attachment.mac),
        mtu=bridge.mtu or None,
        master=bridge.index,
        up=True,
    )


def owned(nl: Netlink) -> list[Attachment]:
    """Every NIC a Tashi driver made in this namespace, in instance and NIC order."""
    found = [parse_mark(link) for link in nl.links() if link.kind == "tun"]
    return sorted((a for a in found if a is not None), key=lambda a: (a.instance_id, a.nic_index))


def unplug(nl: Netlink, instance_id: InstanceId) -> list[str]:
    """Delete every tap of ``instance_id``: the marked ones, and unmarked taps with one of its
    names (a tap made just before a crash, before its mark was set). Returns the names."""
    names = tap_names(instance_id)
    doomed = []
    for link in nl.links():
        if link.kind != "tun":
            continue
        mark = parse_mark(link)
        if (mark is not None and mark.instance_id == instance_id) or (
            mark is None and link.name in names
        ):
            doomed.append(link.name)
    return [name for name in doomed if nl.delete(name)]


def keep_only(nl: Netlink, running: set[InstanceId]) -> list[Attachment]:
    """After a restart (``adopt``): delete the taps of instances that no longer run; the
    NICs of those that do, as found."""
    found = owned(nl)
    for gone in sorted({a.instance_id for a in found} - running):
        log.info("instance %s is not running: removing its taps", gone)
        unplug(nl, gone)
    return [a for a in found if a.instance_id in running]
