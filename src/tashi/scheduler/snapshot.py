"""What a policy decides on: an immutable snapshot of the cluster, and a ledger of free capacity.

The agent builds a ``Snapshot`` from one read of the cluster manager (hosts with what their
placed instances use, users' priorities, the instances still to place). Placing a queue then
needs the hosts' *remaining* capacity after each choice; copying a snapshot per choice would cost
O(hosts) each time, so a policy keeps that in a ``Ledger``: flat arrays indexed like
``Snapshot.hosts``, built once per round and updated in O(1) per placement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from tashi.api.schemas import DiskOut, HostOut, InstanceOut

NORMAL = "Normal"
PENDING, HELD = "Pending", "Held"


@dataclass(frozen=True, slots=True)
class HostView:
    """One host as the scheduler sees it (``usedMemory``/``usedCores``: placed instances)."""

    id: int
    name: str
    up: bool
    state: str
    memory: int
    cores: int
    cpu_speed: int = 0
    load: float | None = None
    reserved: frozenset[int] = frozenset()
    config: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    used_memory: int = 0
    used_cores: int = 0
    instances: int = 0

    @property
    def usable(self) -> bool:
        return self.up and self.state == NORMAL

    def allows(self, user_id: int) -> bool:
        """Reserved hosts take only their listed users' instances."""
        return not self.reserved or user_id in self.reserved

    @classmethod
    def of(cls, host: HostOut) -> HostView:
        return cls(
            id=host.id,
            name=host.name,
            up=host.up,
            state=host.state,
            memory=host.memory,
            cores=host.cores,
            cpu_speed=host.cpuSpeed,
            load=host.load,
            reserved=frozenset(host.reserved),
            config=MappingProxyType(dict(host.config)),
            used_memory=host.usedMemory,
            used_cores=host.usedCores,
            instances=host.instances,
        )


@dataclass(frozen=True, slots=True)
class Request:
    """An instance waiting for a host."""

    id: int
    name: str
    user_id: int
    memory: int
    cores: int
    state: str = PENDING
    cpu_share: int = 1024
    priority: int = 0  # its owner's (SLA@SOI registerUser --priority)
    hints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    persistent_disk: str | None = None  # disks[0].uri when disks[0] is persistent
    reason: str | None = None
    group: str | None = None  # groupName: members are placed together (activateGroup)

    @classmethod
    def of(cls, inst: InstanceOut, priority: int = 0) -> Request:
        first = inst.disks[0] if inst.disks else None
        return cls(
            id=inst.id,
            name=inst.name,
            user_id=inst.userId,
            memory=inst.memory,
            cores=inst.cores,
            state=inst.state,
            cpu_share=inst.cpuShare,
            priority=priority,
            hints=MappingProxyType(dict(inst.hints)),
            persistent_disk=first.uri if first is not None and _own_persistent(first) else None,
            reason=inst.reason,
            group=inst.groupName,
        )


@dataclass(frozen=True, slots=True)
class Running:
    """A placed instance (for the policies that migrate: consolidated, rebalancing)."""

    id: int
    name: str
    host_id: int
    memory: int
    cores: int
    state: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The cluster at one moment. ``hosts`` keep the cluster manager's order (host id)."""

    hosts: tuple[HostView, ...]
    pending: tuple[Request, ...] = ()
    placed: tuple[Running, ...] = ()
    # disks[0] URI -> how many instances (any state) have it as their persistent first disk
    persistent_uses: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    index: Mapping[int, int] = field(init=False)  # host id -> position in hosts
    by_name: Mapping[str, int] = field(init=False)  # host name -> position

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "index", MappingProxyType({h.id: i for i, h in enumerate(self.hosts)})
        )
        object.__setattr__(
            self, "by_name", MappingProxyType({h.name: i for i, h in enumerate(self.hosts)})
        )

    def find_host(self, ref: str) -> int | None:
        """Position of the host a hint names (its id as text, or its name)."""
        ref = ref.strip()
        if ref.isdigit() and int(ref) in self.index:
            return self.index[int(ref)]
        return self.by_name.get(ref)


@dataclass(frozen=True, slots=True)
class Limits:
    """Over-commit rates and SLA@SOI's per-VM minimum (see ``[Scheduler]``)."""

    cores_over_rate: float = 1.0
    memory_over_rate: float = 1.0
    cpu_speed_over_rate: float = 1.0
    minimal_vm_memory: int = 0
    check_cpu_speed: bool = False  # SLA@SOI policies: also bound cores x cpuSpeed x share


class Ledger:
    """Free capacity per host (positions as in ``Snapshot.hosts``), updated per placement."""

    __slots__ = ("_hosts", "count", "free_cores", "free_memory", "free_speed", "limits")

    def __init__(self, snapshot: Snapshot, limits: Limits) -> None:
        self.limits = limits
        self._hosts = snapshot.hosts
        self.free_memory = [
            int(h.memory * limits.memory_over_rate) - h.used_memory for h in snapshot.hosts
        ]
        self.free_cores = [h.cores * limits.cores_over_rate - h.used_cores for h in snapshot.hosts]
        # CPU speed in MHz x (share / 1024): a VM with the default share asks a whole core's speed.
        self.free_speed = [
            h.cores * h.cpu_speed * limits.cpu_speed_over_rate - h.used_cores * h.cpu_speed
            for h in snapshot.hosts
        ]
        self.count = [h.instances for h in snapshot.hosts]

    def memory_of(self, request: Request) -> int:
        return max(request.memory, self.limits.minimal_vm_memory)

    def fits(self, i: int, request: Request) -> bool:
        if self.free_memory[i] < self.memory_of(request) or self.free_cores[i] < request.cores:
            return False
        if self.limits.check_cpu_speed and self._hosts[i].cpu_speed:
            return self.free_speed[i] >= self._speed(i, request)
        return True

    def _speed(self, i: int, request: Request) -> float:
        return request.cores * self._hosts[i].cpu_speed * request.cpu_share / 1024

    def take(self, i: int, request: Request) -> None:
        self.free_memory[i] -= self.memory_of(request)
        self.free_cores[i] -= request.cores
        self.free_speed[i] -= self._speed(i, request)
        self.count[i] += 1

    def give_back(self, i: int, request: Request) -> None:
        self.free_memory[i] += self.memory_of(request)
        self.free_cores[i] += request.cores
        self.free_speed[i] += self._speed(i, request)
        self.count[i] -= 1


def build(
    hosts: Sequence[HostOut],
    instances: Sequence[InstanceOut],
    priorities: Mapping[int, int] | None = None,
) -> Snapshot:
    """A snapshot from the cluster manager's answers (``getHosts``, ``getInstances``,
    user id -> priority)."""
    priorities = priorities or {}
    pending: list[Request] = []
    placed: list[Running] = []
    uses: dict[str, int] = {}
    for inst in instances:
        first = inst.disks[0] if inst.disks else None
        if first is not None and _own_persistent(first):
            uses[first.uri] = uses.get(first.uri, 0) + 1
        if inst.state in (PENDING, HELD) and inst.hostId is None:
            pending.append(Request.of(inst, priorities.get(inst.userId, 0)))
        elif inst.hostId is not None:
            placed.append(
                Running(inst.id, inst.name, inst.hostId, inst.memory, inst.cores, inst.state)
            )
    pending.sort(key=lambda r: r.id)
    return Snapshot(
        hosts=tuple(HostView.of(h) for h in hosts),
        pending=tuple(pending),
        placed=tuple(placed),
        persistent_uses=MappingProxyType(uses),
    )


def _own_persistent(disk: DiskOut) -> bool:
    """A persistent disk the instance writes itself. A ``copy`` disk names a template whose
    copy the instance will get (PreparingDisk): many instances may name one (a group launched
    from one image), and none writes it."""
    return disk.persistent and not disk.copy_
