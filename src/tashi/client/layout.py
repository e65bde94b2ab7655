"""Client-side views computed from hosts and instances: ``getVmLayout`` rows and ``getSlots``.

Pure functions, as the original computed them in the client: an instance uses memory and cores
on the host its ``hostId`` names, and a host offers slots only when it is up and Normal.
Reservations are not considered (as in the original). ``verbs/hosts.py`` prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tashi.api.schemas import HostOut, InstanceOut


@dataclass(frozen=True, slots=True)
class LayoutRow:
    """One host of ``getVmLayout`` and what its instances use of it."""

    id: int
    name: str
    state: str
    up: bool
    instances: list[str]
    usedMemory: int  # noqa: N815 -- the original's column name
    memory: int
    usedCores: int  # noqa: N815 -- the original's column name
    cores: int

    def slots(self, cores: int, memory: int) -> int:
        """How many more VMs of ``cores`` cores and ``memory`` MB fit here."""
        if not self.up or self.state != "Normal":
            return 0
        return max(
            0,
            min((self.cores - self.usedCores) // cores, (self.memory - self.usedMemory) // memory),
        )


def layout(hosts: Sequence[HostOut], instances: Sequence[InstanceOut]) -> list[LayoutRow]:
    """One row per host with the names and summed sizes of the instances placed on it."""
    return [_row(host, [i for i in instances if i.hostId == host.id]) for host in hosts]


def _row(host: HostOut, placed: list[InstanceOut]) -> LayoutRow:
    return LayoutRow(
        id=host.id,
        name=host.name,
        state=host.state,
        up=host.up,
        instances=sorted(i.name for i in placed),
        usedMemory=sum(i.memory for i in placed),
        memory=host.memory,
        usedCores=sum(i.cores for i in placed),
        cores=host.cores,
    )


def slots(rows: Sequence[LayoutRow], cores: int, memory: int) -> int:
    """``getSlots``: the sum over hosts of the VMs of that size each could still take."""
    return sum(row.slots(cores, memory) for row in rows)


def slots_sentence(count: int, cores: int, memory: int) -> str:
    return f"{count} available slots for instances with {cores} core(s) and {memory} MB of memory."
