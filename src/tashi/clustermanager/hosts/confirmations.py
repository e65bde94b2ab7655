"""Which hosts have told this cluster manager, since it started, what runs on them.

The store keeps each instance's last known state across a restart of the cluster manager, but
while it was away its hosts may have stopped, fenced or finished VMs: until a host has reported
again, the states recorded for its instances are the past, not a fact. A host counts as
confirmed once a registration or heartbeat of it has been reconciled by this process, and stops
counting when it is taken for down (``HostDown``); the instances on a host that is not confirmed
are shown as unconfirmed, with the time of the host's last report (``HostService.reports``).
The time of each confirmed host's last report is kept here too, so that rendering instances
reads no host from the store once every host has reported.
"""

from __future__ import annotations

from datetime import datetime

from tashi.clustermanager.events import HostDown
from tashi.domain.ids import HostId


class Confirmations:
    def __init__(self) -> None:
        self._hosts: dict[HostId, datetime] = {}  # a confirmed host -> its last report

    def confirm(self, host_id: HostId, at: datetime) -> None:
        """A report of the host made ``at`` has just been reconciled: its instances' states
        are its word."""
        self._hosts[host_id] = at

    async def host_down(self, event: HostDown) -> None:
        self._hosts.pop(event.host.id, None)

    def last_report(self, host_id: HostId) -> datetime | None:
        """When a confirmed host last reported; None: it is not confirmed."""
        return self._hosts.get(host_id)
