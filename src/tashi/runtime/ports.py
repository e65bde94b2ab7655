"""Choosing a TCP port for a listener that will bind it a moment later (a daemon of the
virtual cluster, the target qemu of a live migration)."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

from tashi.domain.errors import Dependency, Unavailable

# The ports ``free_port`` handed out lately in this process (oldest first), never handed out
# again while remembered, so two listeners started back to back never get the same one before
# either has bound it. Bounded: a node manager asks for one per incoming migration for as long
# as it runs, and the range below the ephemeral ports holds about 22,000.
_HANDED_OUT: dict[int, None] = {}
REMEMBERED = 1024
_calls = itertools.count()
LOWEST_PORT = 10000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_floor() -> int:
    """The lowest port the kernel may give an outgoing connection or a bind to port 0."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, for a daemon or a qemu about to listen on it.

    The port is below the kernel's ephemeral range: a port taken from inside it (by binding
    port 0) can be handed by the kernel to any outgoing connection in the moment before the
    daemon binds it, which once made a node manager fail with "address already in use". Ports are
    tried from a point that depends on the pid, so two processes choosing at once rarely try
    the same ones, and each is bound once to check that nobody holds it."""
    top = ephemeral_floor()
    span = max(top - LOWEST_PORT, 1)
    start = (os.getpid() * 7919 + next(_calls) * 104729) % span
    for step in range(span):
        port = LOWEST_PORT + (start + step) % span
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT[port] = None
        if len(_HANDED_OUT) > REMEMBERED:
            del _HANDED_OUT[next(iter(_HANDED_OUT))]
        return port
    message = f"no free TCP port between {LOWEST_PORT} and {top} on {host}"
    raise Unavailable(message, failed=Dependency.other)  # the host's own: told as a failure
