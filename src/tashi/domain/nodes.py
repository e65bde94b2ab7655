"""What a node manager and its cluster manager tell each other, as their services see it.

The node contract's wire models (``tashi.nodeapi.schemas``, pydantic, camelCase) are converted
to and from these records in one module, ``tashi.nodeapi.convert``; the services on both sides
(``clustermanager.hosts.nodereports``, ``clustermanager.hosts.nodes``, ``nodemanager.service``,
``nodemanager.reporting`` …) take and return only these, so a wire change stays at the edge.
The instance a node runs is the domain's own ``models.Instance`` (its ``state`` means nothing
there: a node knows the VM's state, ``VmReport.state``).

A VM's state is the value of ``tashi.vmm.base.VmState`` as a string (the domain does not import
the VMM layer); an event's ``kind`` one of ``EVENT_KINDS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import Instance

#: What a node reports of a VM on its own or at the end of an operation.
EVENT_KINDS = ("started", "exited", "suspended", "suspendFailed", "paused", "running", "failed")


@dataclass(frozen=True, slots=True)
class VmReport:
    """One VM a node manager runs, as it reports it (with the instance it was sent)."""

    instance: Instance
    vm_id: int
    state: str


@dataclass(frozen=True, slots=True)
class VmStatus:
    """A VM as a node manager answers for it after a start, a migration's end or a listing."""

    instance_id: InstanceId
    vm_id: int
    state: str


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something that happened to a VM on its own or as the end of an operation."""

    instance_id: InstanceId
    kind: str
    at: datetime
    vm_id: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Ticket:
    """Where a migration's target listens for the incoming VM."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Transfer:
    """How a migration's transfer went, as its source measured it."""

    total_seconds: float
    downtime_ms: float | None
    transferred_bytes: int | None


@dataclass(frozen=True, slots=True)
class Grant:
    """What a witness knows of its grants to a host (ADR 0010): seconds since it last granted
    it a lease (``None``: not since it started), and how long it has been up."""

    host_id: HostId
    last_grant_age: float | None
    uptime: float


@dataclass(frozen=True, slots=True)
class Witness:
    """A host that vouches for another (ADR 0010), and how to ask it: its node API's base URL
    and the token that proves, to it, who the asker is (``nodeapi.peering.token``)."""

    host_id: HostId
    endpoint: str
    token: str


@dataclass(frozen=True, slots=True)
class WitnessSet:
    """The witnesses a node asks for lease grants besides its cluster manager; ``epoch`` is
    acknowledged back (``witness_epoch``) once the node uses the set."""

    epoch: int
    hosts: tuple[Witness, ...] = ()


@dataclass(frozen=True, slots=True)
class Registration:
    """A node manager registering its host (SLA@SOI's automatic host registration)."""

    name: str
    memory: int
    cores: int
    version: str
    endpoint: str  # where the node manager serves the node API
    secret: str  # the bearer token the cluster manager must use toward it
    cpu_speed: int = 0
    peer_secret: str | None = None  # key of the tokens its witnessed hosts present to it
    vms: tuple[VmReport, ...] = ()
    witness_epoch: int | None = None  # the witness set it uses (None: none yet)
    fenced: tuple[InstanceId, ...] = ()  # VMs it stopped itself, its lease run out
    underlay: str | None = None  # its address on the network driver's underlay
    firewall: str | None = None  # the version of the security-group policy it enforces


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A node manager's periodic report of its host and its VMs."""

    vms: tuple[VmReport, ...]
    load: float | None = None
    free_memory: int | None = None
    memory: int | None = None
    cores: int | None = None
    witness_epoch: int | None = None
    fenced: tuple[InstanceId, ...] = ()
    underlay: str | None = None
    #: the version (``firewall.Policy.version``) of the security-group policy the node enforces
    #: (``None``: a node that does not say; the cluster manager then audits it blind)
    firewall: str | None = None


#: What of a heartbeat decides whether it says anything new (ADR 0023): memory, cores, underlay,
#: the witness epoch, the security-group policy's version, and each VM's instance id, VM id and
#: state, in the order reported.
ReportKey = tuple[object, ...]


def report_key(
    memory: int | None,
    cores: int | None,
    underlay: str | None,
    witness_epoch: int | None,
    vms: Iterable[tuple[int, int, str]],
    firewall: str | None,
) -> ReportKey:
    return (memory, cores, underlay, witness_epoch, firewall, tuple(vms))


def heartbeat_key(beat: Heartbeat) -> ReportKey:
    vms = ((r.instance.id, r.vm_id, r.state) for r in beat.vms)
    return report_key(
        beat.memory, beat.cores, beat.underlay, beat.witness_epoch, vms, beat.firewall
    )


@dataclass(frozen=True, slots=True)
class Renewal:
    """A host's liveness from a heartbeat that said nothing new (ADR 0023): when it reported,
    its load, and the HA lease granted with the reply (``None``: HA is off)."""

    host_id: HostId
    at: datetime
    load: float | None
    lease_expires: datetime | None


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The cluster manager's reply to a registration or a heartbeat: the host as it stands,
    the HA lease it grants (``lease_time`` s; 0: none), the other hosts' underlay addresses
    (``None``: not sent, the node reported none) and the node's witnesses (``None``: HA off).
    ``heartbeat_interval`` and ``expire_host_time`` are told at registration only (0 else)."""

    host_id: HostId
    state: str
    up: bool = True
    lease_time: float = 0.0
    peers: tuple[str, ...] | None = None
    witnesses: WitnessSet | None = None
    heartbeat_interval: float = 0.0
    expire_host_time: float = 0.0
