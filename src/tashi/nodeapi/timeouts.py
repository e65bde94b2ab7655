"""How long each node call may take before the caller gives up (seconds).

Calls that only start work (suspend, shutdown) answer quickly; the slow part is reported later
as an event. Migration and destroy wait for the work itself and get their own budgets.
"""

from __future__ import annotations

CONNECT = 3.0
#: how long an idle pooled connection is used again: less than the servers' keep-alive (5 s,
#: ``tashi.web.server.KEEP_ALIVE``), so a request never goes out on a connection its server is
#: closing (which fails it as ``Unanswered``; httpx's default, 5 s, raced the server's)
KEEP_ALIVE = 3.0
DEFAULT = 10.0
START = 60.0  # prepares disks (overlays) and starts the process; not the guest's boot
DESTROY = 30.0  # quit, then SIGTERM, then SIGKILL, and wait for the process to go
INCOMING = 60.0
FINISH_INCOMING = 60.0  # asked once the source has sent it all: the VM arrives in moments
HEARTBEAT = 5.0
REGISTER = 10.0
WITNESS = 2.0  # a lease grant from a witness host: a few milliseconds of work (ADR 0010)
ATTACH = 30.0  # a volume hot-plugged: a lock, qemu-img info, two QMP commands
ATTACH_NIC = 30.0  # a NIC hot-plugged: a tap (netlink), its guard (nft), two QMP commands


def detach(guest: float) -> float:
    """A hot-unplug waits for the guest to let the disk go (``guest`` seconds at most)."""
    return guest + 15.0


def backup(copy: float) -> float:
    """A running VM's disk is copied within ``copy`` seconds, or the copy is given up."""
    return copy + 30.0


def migrate(migrate_timeout: float) -> float:
    """The source waits for the whole transfer; allow a margin over QEMU's own limit."""
    return migrate_timeout + 30.0
