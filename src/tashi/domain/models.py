"""The records Tashi keeps: instances, hosts, networks, users, images, node links, the history.

Frozen dataclasses: a change is a new record saved through the store with compare-and-swap.
Field names follow design.md §3; the wire schemas in ``api/schemas.py`` mirror them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.states import HostState, InstanceState
from tashi.domain.witnesses import WitnessSets

DEFAULT_CPU_SHARE = 1024


class Role(enum.Enum):
    """What a principal may do. ``user`` owns instances; the others are trusted roles."""

    user = "user"
    admin = "admin"  # host, network and user administration; may act on every instance
    agent = "agent"  # the scheduler: sees everything, activates instances
    node = "node"  # a node manager: registers itself and reports its VMs


@dataclass(frozen=True, slots=True)
class DiskConfig:
    """One disk of an instance: an image in the image store, copy-on-write unless persistent.

    ``uri`` is the image's file name in the store (Tashi's name for the field), never a path.
    ``copy`` (SLA@SOI): ``uri`` is a template; when the instance is first activated the cluster
    manager makes the VM its own full copy of it (state ``PreparingDisk``) and the disk then
    names that copy, persistent, with ``copy`` false. A copy disk is persistent by definition.
    A volume (``domain/volumes.py``) is a persistent disk whose ``uri`` is ``volume:<id>`` and
    whose ``device`` is where it was attached (EC2's ``/dev/sdf``), which fixes where the
    hypervisor puts it, so that it is the same disk after a hot-plug, a start or a migration."""

    uri: str
    persistent: bool = False
    copy: bool = False
    device: str | None = None


MAX_NICS = 32  # NIC indices 0..31 a VM: more than QEMU's machine types give PCI slots to spare


@dataclass(frozen=True, slots=True)
class NicConfig:
    """One network interface: the network it joins, its MAC and (once known) its address."""

    network: NetworkId
    mac: str
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Instance:
    """A virtual machine as the cluster manager records it."""

    id: InstanceId
    name: str
    user_id: UserId
    state: InstanceState
    cores: int
    memory: int  # MB
    disks: tuple[DiskConfig, ...]
    nics: tuple[NicConfig, ...]
    cpu_share: int = DEFAULT_CPU_SHARE
    hints: Mapping[str, str] = field(default_factory=dict)
    group_name: str | None = None
    host_id: HostId | None = None
    vm_id: int | None = None
    reason: str | None = None  # why it is Held / what last went wrong, shown to the user
    created_at: datetime | None = None
    state_since: datetime | None = None  # when it entered ``state``; deadlines count from here


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """What ``createVm`` asks for, after parsing and validation (ids and state come later)."""

    name: str
    cores: int
    memory: int
    disks: tuple[DiskConfig, ...]
    nics: tuple[NicConfig, ...]
    cpu_share: int = DEFAULT_CPU_SHARE
    hints: Mapping[str, str] = field(default_factory=dict)
    group_name: str | None = None


@dataclass(frozen=True, slots=True)
class Host:
    """A machine that runs a node manager."""

    id: HostId
    name: str
    up: bool = False
    decayed: bool = False
    state: HostState = HostState.Normal
    memory: int = 0  # MB, as last reported by its node manager
    cores: int = 0
    cpu_speed: int = 0  # MHz (SLA@SOI)
    version: str = ""
    notes: str = ""
    reserved: tuple[UserId, ...] = ()  # users the host is reserved for; empty = everyone
    config: Mapping[str, str] = field(default_factory=dict)  # SLA@SOI setHostConfig elements
    last_heartbeat: datetime | None = None
    load: float | None = None
    # HA: until when the host's node manager may run its VMs without hearing from the cluster
    # manager (it stops them itself after that); None: no lease was ever granted.
    lease_expires: datetime | None = None


@dataclass(frozen=True, slots=True)
class NodeLink:
    """How the cluster manager reaches a host's node manager, recorded when the node registers.

    ``secret`` is the credential the cluster manager presents to that node manager: it is kept
    out of ``repr`` (and so out of logs and tracebacks) and never leaves the cluster manager."""

    host_id: HostId
    endpoint: str  # base URL of the node manager's API
    secret: str = field(repr=False)
    user_id: UserId  # the node's own account (role ``node``)
    registered_at: datetime
    # ADR 0010: the key of the tokens other hosts present to this one as their witness (None:
    # a node that sent none), and the witness sets this host may be using.
    peer_secret: str | None = field(default=None, repr=False)
    witnesses: WitnessSets = field(default_factory=WitnessSets)


@dataclass(frozen=True, slots=True)
class InstanceEvent:
    """One line of an instance's history ("the instance history shows what happened").

    Kept after the instance is removed; ids grow in the order events were recorded."""

    id: int
    instance_id: InstanceId
    at: datetime
    kind: str  # a short word: "state", "migrated", "fenced", ...
    message: str


@dataclass(frozen=True, slots=True)
class HostReport:
    """How much the recorded state of a host's instances is worth: when the host last reported
    them (None: never), and whether it has done so since the cluster manager started."""

    at: datetime | None
    confirmed: bool


@dataclass(frozen=True, slots=True)
class Usage:
    """What some instances take of one host: how many, their memory (MB) and their cores."""

    instances: int = 0
    memory: int = 0
    cores: int = 0


@dataclass(frozen=True, slots=True)
class Network:
    """A virtual network. The id is the VLAN/VNI number the administrator chose."""

    id: NetworkId
    name: str


@dataclass(frozen=True, slots=True)
class User:
    """Someone (or some daemon) that may call the cluster manager."""

    id: UserId
    name: str
    role: Role = Role.user
    priority: int = 0  # SLA@SOI: higher runs first
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """A disk image file in the shared image store."""

    name: str
    size: int  # bytes on disk
    format: str  # "qcow2", "raw", ...
    virtual_size: int | None = None
    owner: UserId | None = None
    public: bool = True


@dataclass(frozen=True, slots=True)
class AccessKey:
    """A user's key for the EC2 API (AWS Signature Version 4): its public id and whose it is.

    The secret it signs with is kept sealed by the store's caller and never part of this
    record (``clustermanager/accounts/accesskeys.py``)."""

    id: str  # "AKIA" and 16 more capitals or digits, as AWS's
    user_id: UserId
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of an operation."""

    user_id: UserId
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    @property
    def is_trusted(self) -> bool:
        """Admins and the cluster's own daemons see every instance."""
        return self.role in (Role.admin, Role.agent, Role.node)
