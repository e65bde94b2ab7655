"""NIC addresses for the DHCP/DNS hook: allocated in the database, recorded on the NIC.

The original ``DhcpDns`` hook kept its pool in the scheduler's memory and handed addresses out
twice after a restart. Here the hook asks the cluster manager, which allocates in the store
(``tx.addresses``: the lowest free address of the hook's ``ipRange<networkId>``, unique per
network) and writes the address on the NIC (``nics[i].ip``, which getInstances shows) in the
same unit. Asking again for the same NIC gives the same address, so a hook that is retried, or
restarted, never takes a second one. The addresses go when the instance is removed (the store
releases them in the unit that removes it).

A NIC that already carries an address inside the range (given at createVm) keeps it if no other
instance holds it.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.auth import require_role
from tashi.clustermanager.database import Database
from tashi.domain.clock import Clock
from tashi.domain.errors import AlreadyExists, InsufficientResources, InvalidInput
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import Instance, NicConfig, Principal, Role
from tashi.storage.contract import Address, InstanceChanges, Transaction

log = logging.getLogger(__name__)

_ATTEMPTS = 5  # units lost to a concurrent allocation of the same address, run again


@dataclass(frozen=True, slots=True)
class AddressRange:
    first: str
    last: str

    @classmethod
    def parse(cls, text: str) -> AddressRange:
        """``a.b.c.d-e.f.g.h`` (the original ``ipRange<N>`` syntax)."""
        first, sep, last = text.strip().partition("-")
        try:
            low, high = ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip())
        except ValueError as exc:
            raise InvalidInput(f"{text!r} is not a range like 198.19.1.10-198.19.1.200") from exc
        if not sep or low > high:
            raise InvalidInput(f"{text!r} is not a range like 198.19.1.10-198.19.1.200")
        return cls(str(low), str(high))

    def __contains__(self, ip: object) -> bool:
        try:
            value = ipaddress.IPv4Address(str(ip))
        except ValueError:
            return False
        return ipaddress.IPv4Address(self.first) <= value <= ipaddress.IPv4Address(self.last)


class AddressService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def allocate(
        self, caller: Principal, ref: str, index: int, address_range: str
    ) -> tuple[Instance, int]:
        """The address of NIC ``index`` of instance ``ref`` from ``address_range``, allocated
        (or found) and written on the NIC; returns the instance as it now is and the index."""
        require_role(caller, Role.agent, Role.admin, doing="allocating addresses")
        wanted = AddressRange.parse(address_range)
        for attempt in range(_ATTEMPTS):
            try:
                return await self._db.write(lambda tx: self._allocate(tx, ref, index, wanted))
            except AlreadyExists:
                if attempt == _ATTEMPTS - 1:
                    raise
                log.debug("address race on instance %s NIC %s; trying again", ref, index)
        raise AssertionError("unreachable")

    async def list(
        self,
        caller: Principal,
        network: int | None = None,
        *,
        after: InstanceId | None = None,
        limit: int | None = None,
    ) -> list[Address]:
        """The allocated addresses (on ``network``), by instance then NIC; ``after`` and
        ``limit`` give a page by instance: the addresses of at most ``limit`` instances whose
        id is greater than ``after``, so that a page never splits an instance's NICs."""
        require_role(caller, Role.agent, Role.admin, doing="listing addresses")
        net = NetworkId(network) if network is not None else None
        return await self._db.read(
            lambda tx: tx.addresses.list(network_id=net, after_instance=after, instances=limit)
        )

    def _allocate(
        self, tx: Transaction, ref: str, index: int, wanted: AddressRange
    ) -> tuple[Instance, int]:
        inst = refs.instance(tx, ref)
        if not 0 <= index < len(inst.nics):
            raise InvalidInput(f"instance {inst.name} has no NIC {index} ({len(inst.nics)} NICs)")
        nic = inst.nics[index]
        network = NetworkId(nic.network)
        address = None
        if nic.ip and nic.ip in wanted:
            try:  # the address the user gave it, if nobody else holds it
                address = tx.addresses.allocate(inst.id, index, network, nic.ip, nic.ip)
            except InsufficientResources:
                address = None
        if address is None:
            address = tx.addresses.allocate(inst.id, index, network, wanted.first, wanted.last)
        if nic.ip == address.ip:
            return inst, index
        changes = InstanceChanges(nics=(NicConfig(nic.network, nic.mac, address.ip),))
        now = self._clock.now()
        return tx.instances.transition(
            inst.id, inst.state, inst.state, now=now, changes=changes
        ), index
