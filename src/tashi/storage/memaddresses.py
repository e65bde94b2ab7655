"""The in-memory store's address allocations (``memory.py``; the contract is
``contract.AddressRepository``): the lowest free address of a network's range for each NIC,
never one another instance holds.
"""

from __future__ import annotations

from tashi.domain.errors import InsufficientResources, NotFound
from tashi.domain.ids import InstanceId, NetworkId
from tashi.storage.contract import Address
from tashi.storage.memtables import Tables
from tashi.storage.shared import check_limit, lowest_free_address


class MemoryAddresses:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def allocate(
        self,
        instance_id: InstanceId,
        nic_index: int,
        network_id: NetworkId,
        first: str,
        last: str,
    ) -> Address:
        lowest_free_address(first, last, ())  # the range is checked before anything else
        if instance_id not in self._t.instances:
            raise NotFound(f"instance {instance_id} does not exist")
        if network_id not in self._t.networks:
            raise NotFound(f"network {network_id} does not exist")
        held = self._t.addresses.get((instance_id, nic_index))
        if held is not None and held.network_id == network_id:
            return held
        taken: list[str | None] = [
            a.ip for a in self._t.addresses.values() if a.network_id == network_id
        ]
        taken += [
            n.ip
            for i in self._t.instances.values()
            if i.id != instance_id
            for n in i.nics
            if n.network == network_id
        ]
        ip = lowest_free_address(first, last, taken)
        if ip is None:
            raise InsufficientResources(
                f"no free address from {first} to {last} on network {network_id}"
            )
        address = Address(network_id, ip, instance_id, nic_index)
        self._t.addresses[(instance_id, nic_index)] = address
        return address

    def release(self, instance_id: InstanceId) -> int:
        doomed = [key for key in self._t.addresses if key[0] == instance_id]
        for key in doomed:
            del self._t.addresses[key]
        return len(doomed)

    def list(
        self,
        *,
        network_id: NetworkId | None = None,
        instance_id: InstanceId | None = None,
        after_instance: InstanceId | None = None,
        instances: int | None = None,
    ) -> list[Address]:
        found = [
            a
            for _, a in sorted(self._t.addresses.items())
            if (network_id is None or a.network_id == network_id)
            and (instance_id is None or a.instance_id == instance_id)
            and (after_instance is None or a.instance_id > after_instance)
        ]
        if instances is None:
            return found
        kept = sorted({a.instance_id for a in found})[: check_limit(instances)]
        return [a for a in found if a.instance_id in kept]
