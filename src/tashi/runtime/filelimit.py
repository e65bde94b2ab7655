"""The open-file limit a daemon runs under, raised to what the system allows, and checked
against what its work needs.

A process may raise its soft ``RLIMIT_NOFILE`` up to the hard one by itself; systemd's default
soft limit is 1,024 (its hard limit 524,288), which a cluster manager of a few hundred hosts can
reach: each host may hold one connection of its own open to it (a heartbeat kept alive) and one
of the cluster manager's to it while a call is under way. ``raise_soft`` lifts the soft limit,
``needed`` is what a daemon serving ``peers`` peers wants, and ``shortfall`` says, for the log,
when the limit is below that.
"""

from __future__ import annotations

import resource

BASE = 256  # listeners, database connections, logs, the image store, threads' files
PER_PEER = 2  # its connection to us, kept alive, and ours to it during a call


def raise_soft() -> int:
    """Raise the soft limit of open files to the hard one (where allowed); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def needed(peers: int) -> int:
    """Open files a daemon with ``peers`` peers may want at once."""
    return BASE + PER_PEER * peers


def shortfall(limit: int, peers: int, what: str) -> str | None:
    """What to tell the operator when ``limit`` is too low for ``peers`` (else ``None``)."""
    want = needed(peers)
    if limit >= want:
        return None
    return (
        f"the open-file limit is {limit}, and {peers} {what} need about {want}: raise it"
        " (LimitNOFILE= in the unit, or ulimit -n) or calls will fail with 'too many open files'"
    )
