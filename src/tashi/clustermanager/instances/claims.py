"""activateVm's claim: a host's capacity is checked and taken in the transaction that places.

``activate_vm`` (``instances.py``) moves an instance Pending/Held -> Activating (or
PreparingDisk, Resuming) with a host id. ``check`` runs inside that same write unit, before the
compare-and-swap: it locks the host's row (``HostRepository.lock``), so that claims on one host
run one after another on every store, then checks that the host is up and Normal, that its
reservations admit the instance's owner, and that the memory and cores of the instances it
already holds plus this one fit within its capacity times the over-commit rates
(``[ClusterManagerService] memoryOverRate``/``cpuCoresOverRate``). Two schedulers racing for
the last room on a host: the first claim commits, the second then sees it and is refused with
``InsufficientResources`` (HTTP 409 ``insufficient_resources``), and its agent tries its next
host. Two schedulers racing for one instance: the compare-and-swap lets one win
(``StateConflict``).

The original never checked capacity in the cluster manager (reference §5, "maxMemory"); its
scheduler trusted its own stale snapshot and overloaded hosts were observed (§14.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from tashi.domain.errors import Forbidden, InsufficientResources, InvalidState
from tashi.domain.ids import UserId
from tashi.domain.models import Host, Instance, Usage
from tashi.domain.states import ON_HOST, HostState, InstanceState
from tashi.storage.contract import Transaction

#: States in which an instance takes its share of its host: every state in which a VM process
#: may exist there, and Orphaned (its host is silent, but may come back still running it).
RESERVING: tuple[InstanceState, ...] = tuple(sorted(ON_HOST | {InstanceState.Orphaned}))


@dataclass(frozen=True, slots=True)
class OverRates:
    """How far a host may be over-committed: 1.0 means its capacity, no more."""

    memory: float = 1.0
    cores: float = 1.0


def usable(host: Host) -> None:
    """``InvalidState`` unless the host can take a VM now."""
    if not host.up:
        raise InvalidState(f"host {host.name!r} is down")
    if host.state is not HostState.Normal:
        raise InvalidState(f"host {host.name!r} is {host.state.name}, not Normal")


def admits(host: Host, inst: Instance) -> None:
    """``Forbidden`` when the host is reserved for users other than the instance's owner."""
    if host.reserved and inst.user_id not in host.reserved:
        raise Forbidden(f"host {host.name!r} is reserved for other users")


def used(tx: Transaction, host: Host) -> Usage:
    """What the instances placed on ``host`` take of it (read under the host's lock), summed
    by the store without reading the instances."""
    return tx.instances.usage_on_host(host.id, RESERVING)


#: Nothing on its way to a host.
NO_USAGE = Usage()


def check(
    tx: Transaction,
    inst: Instance,
    host: Host,
    rates: OverRates,
    incoming: Usage = NO_USAGE,
) -> Host:
    """Lock ``host`` and check that it may take ``inst`` now; the host as locked.

    ``incoming`` is what live migrations in flight are bringing to the host: those instances
    are still placed on their source in the store, but their room on the target is taken from
    the moment the migration was claimed (``migration.Migrations.incoming``).

    Raises ``InvalidState`` (down, not Normal), ``Forbidden`` (reserved for others) or
    ``InsufficientResources`` (no room)."""
    locked = tx.hosts.lock(host.id)
    usable(locked)
    admits(locked, inst)
    placed = used(tx, locked)
    taken = Usage(
        instances=placed.instances + incoming.instances,
        memory=placed.memory + incoming.memory,
        cores=placed.cores + incoming.cores,
    )
    memory_cap = int(locked.memory * rates.memory)
    cores_cap = int(locked.cores * rates.cores)
    if taken.memory + inst.memory > memory_cap:
        raise InsufficientResources(
            f"host {locked.name!r} has {max(0, memory_cap - taken.memory)} MB of memory free"
            f" (of {memory_cap} MB with memoryOverRate {rates.memory:g});"
            f" {inst.name!r} needs {inst.memory} MB"
        )
    if taken.cores + inst.cores > cores_cap:
        raise InsufficientResources(
            f"host {locked.name!r} has {max(0, cores_cap - taken.cores)} cores free"
            f" (of {cores_cap} with cpuCoresOverRate {rates.cores:g});"
            f" {inst.name!r} needs {inst.cores}"
        )
    return locked


def room(tx: Transaction, owner: UserId, cores: int, memory: int, rates: OverRates) -> int:
    """How many more VMs of ``cores`` and ``memory`` the hosts that may take the owner's VMs now
    (up, Normal, not reserved for others) hold, by what is placed on them: the capacity a
    group start can count on at this moment (a scheduler's claim still decides each one)."""
    usage = tx.instances.usage_by_host(RESERVING)
    total = 0
    for host in tx.hosts.list():
        if not host.up or host.state is not HostState.Normal:
            continue
        if host.reserved and owner not in host.reserved:
            continue
        taken = usage.get(host.id, NO_USAGE)
        free_memory = int(host.memory * rates.memory) - taken.memory
        free_cores = int(host.cores * rates.cores) - taken.cores
        total += max(0, min(free_memory // max(memory, 1), free_cores // max(cores, 1)))
    return total
