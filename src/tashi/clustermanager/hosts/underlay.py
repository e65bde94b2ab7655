"""Underlay addresses: how node managers with a host-spanning network driver (vxlan) find
each other without being restarted when a host joins or leaves.

A node manager reports its underlay address (``underlay`` in its registration and heartbeats);
the cluster manager keeps it in the host's configuration elements under ``underlay`` (so
``getHosts`` shows it and no schema change was needed), and answers every registration and
heartbeat of such a node with the underlay addresses of the other hosts that are up
(``peers``). A host that stops heartbeating is marked down and drops out of the lists within
the host expiry; one that registers is in them at the others' next heartbeat.

Endpoints that are not hosts (the cluster manager's own leg on the VM networks, where the
DHCP/DNS service runs) are each node's static ``[Vxlan] peers``; the driver floods to both.
"""

from __future__ import annotations

from collections.abc import Iterable

from tashi.domain.ids import HostId
from tashi.domain.models import Host

UNDERLAY_KEY = "underlay"


def config_with(host: Host, underlay: str | None) -> dict[str, str] | None:
    """The host's configuration elements with ``underlay`` recorded, or ``None`` when they
    already say so (or nothing was reported): no write for an unchanged address."""
    if not underlay or host.config.get(UNDERLAY_KEY) == underlay:
        return None
    return {**host.config, UNDERLAY_KEY: underlay}


def peers_of(hosts: Iterable[Host], me: HostId) -> list[str]:
    """The underlay addresses of the up hosts other than ``me``, sorted, each once."""
    found = {
        h.config[UNDERLAY_KEY] for h in hosts if h.up and h.id != me and h.config.get(UNDERLAY_KEY)
    }
    mine = {h.config.get(UNDERLAY_KEY) for h in hosts if h.id == me}
    return sorted(found - mine)
