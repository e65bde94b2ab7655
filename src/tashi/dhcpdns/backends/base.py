"""The DHCP/DNS backend contract: where the ``DhcpDns`` hook publishes leases and names.

A backend holds a set of ``HostEntry``s, one per VM NIC with an address: the static DHCP lease
(MAC -> IP, with the host name in DHCP option 12) and the DNS records (``fqdn`` A -> IP, and the
PTR back when ``reverse`` is set and the backend can do without it otherwise). Entries are keyed
by (instance, NIC index); every network's entries go to that network's DHCP/DNS service.

* ``replace_all(entries)`` makes the published state exactly ``entries`` (the hook's ``start``:
  the cluster's instances are the truth, whatever the backend held before). Idempotent.
* ``publish(entries)`` adds or replaces the given entries (by key); others stay. Idempotent.
* ``withdraw(instance_id)`` removes every entry of the instance; unknown ones are no error.
* ``entries()`` is what is published now, ordered by key.
* ``close()`` releases the backend's own resources; what was published stays published.

Changes reach DHCP and DNS clients as soon as the service has taken them in: when the call
returns the service has been told (dnsmasq: its files are written and it has been sent SIGHUP;
it reloads within milliseconds, asynchronously). Failures are ``TashiError``s
(``BackendFailure`` when the service refused or is gone).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from tashi.domain.ids import InstanceId, NetworkId


@dataclass(frozen=True, slots=True, order=True)
class HostEntry:
    instance_id: InstanceId
    nic_index: int
    network_id: NetworkId
    mac: str
    ip: str
    hostname: str  # the short name DHCP hands out (option 12)
    fqdn: str  # the DNS name of the A record


class DhcpDnsBackend(Protocol):
    name: str

    async def replace_all(self, entries: Iterable[HostEntry]) -> None: ...

    async def publish(self, entries: Iterable[HostEntry]) -> None: ...

    async def withdraw(self, instance_id: InstanceId) -> None: ...

    async def entries(self) -> list[HostEntry]: ...

    async def close(self) -> None: ...


def by_key(entries: Iterable[HostEntry]) -> dict[tuple[InstanceId, int], HostEntry]:
    return {(e.instance_id, e.nic_index): e for e in entries}
