"""Choosing a TCP port for a listener that will bind it a moment later (a daemon of the
virtual cluster, the target qemu of a live migration)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tashi.domain.errors import Unavailable

# Ports handed out by ``free_port`` in this process; a port is never handed out twice, so two
# daemons started back to back never get the same one before either has bound it.
_HANDED_OUT: set[int] = set()
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
    start = (os.getpid() * 7919 + len(_HANDED_OUT) * 104729) % span
    for step in range(span):
        port = LOWEST_PORT + (start + step) % span
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise Unavailable(f"no free TCP port between {LOWEST_PORT} and {top} on {host}")
