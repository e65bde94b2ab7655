"""Wire models of the node contract (pydantic; camelCase as in the public API).

The cluster manager sends a node manager the whole instance it should run (``InstanceWire``);
the node manager keeps it beside the VM, so that after a restart of either side the node can
report what it runs, and the cluster manager can adopt a VM it does not know.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from tashi.api.schemas import Int  # ids, sizes and counts a node sends: the store's bound


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiskWire(_Model):
    uri: str
    persistent: bool = False
    device: str | None = Field(
        None,
        max_length=16,
        description="a volume's attachment point (EC2's /dev/sdf; ``domain/volumes.py``), which"
        " fixes where the hypervisor puts it",
    )


class NicWire(_Model):
    network: Int
    mac: str
    ip: str | None = None


class InstanceWire(_Model):
    """The instance as the node manager needs it to run the VM."""

    id: Int
    name: str
    userId: Int
    cores: Int
    memory: Int
    cpuShare: Int = 1024
    disks: list[DiskWire]
    nics: list[NicWire]
    hints: dict[str, str] = Field(default_factory=dict)
    launch: dict[str, str] = Field(
        default_factory=dict,
        description="what the EC2 API launched it with (``domain/launches.py``), for the"
        " instance metadata the node serves its guest: the cluster manager's ``__ec2.*`` hints"
        " without their prefix",
    )


class VmReport(_Model):
    """One VM a node manager runs, as it reports it."""

    instanceId: Int
    vmId: Int
    state: str  # tashi.vmm.base.VmState value
    instance: InstanceWire


class WitnessWire(_Model):
    """A host that vouches for this one (ADR 0010), and how to ask it."""

    hostId: Int
    endpoint: str = Field(max_length=255, description="the witness's node API base URL")
    token: str = Field(
        max_length=128,
        description="proof, for that witness, that the bearer is this host (``peering.token``)",
    )


class WitnessSetWire(_Model):
    """The witnesses a node asks for lease grants, besides its cluster manager."""

    epoch: int = Field(
        ge=1, le=2**63 - 1, description="acknowledged back in ``witnessEpoch`` once in use"
    )
    hosts: list[WitnessWire]


class _Report(_Model):
    """What registration and heartbeats both carry besides their own fields."""

    witnessEpoch: Int | None = Field(
        None, description="the epoch of the witness set the node uses (None: none yet)"
    )
    fenced: list[Int] = Field(
        default_factory=list,
        description="instances whose VMs this host stopped itself because its lease ran out"
        " (reported until a reply acknowledges them)",
    )

    underlay: str | None = Field(
        None,
        max_length=64,
        description="this host's address on the network driver's underlay (vxlan), for the"
        " other hosts' tunnels; absent: the driver has none",
    )
    firewall: str | None = Field(
        None,
        max_length=64,
        description="the version of the security-group policy the node enforces"
        " (``PUT /v1/firewall``'s answer), so that the cluster manager sends it the policy"
        " again only when it differs; absent: the node does not say",
    )


class _Reply(_Model):
    """What the replies to registration and heartbeats both carry."""

    leaseTime: float = Field(
        0.0,
        description="HA lease (s): the node stops its VMs when it has had no reply for this long"
        " after sending (0: no lease, never self-fence)",
    )
    peers: list[str] | None = Field(
        None,
        description="the underlay addresses of the other up hosts (for the node's network"
        " driver), sent only to a node that reported its own underlay",
    )
    witnesses: WitnessSetWire | None = Field(
        None, description="the hosts that vouch for this one (None: HA is off)"
    )


class RegisterIn(_Report):
    name: str
    memory: Int
    cores: Int
    cpuSpeed: Int = 0
    version: str
    endpoint: str = Field(
        max_length=255, description="base URL where the node manager serves the node API"
    )
    secret: str = Field(
        min_length=32, max_length=255, description="bearer token the CM must use toward it"
    )
    peerSecret: str | None = Field(
        None,
        min_length=32,
        max_length=255,
        description="key of the tokens other hosts present to this one as its witness",
    )
    vms: list[VmReport] = Field(default_factory=list)


class RegisterOut(_Reply):
    hostId: int
    state: str
    heartbeatInterval: float
    expireHostTime: float


class HeartbeatIn(_Report):
    load: float | None = None
    freeMemory: Int | None = None
    memory: Int | None = None
    cores: Int | None = None
    vms: list[VmReport]


class VmKeyIn(BaseModel):
    """What of a ``VmReport`` tells whether a heartbeat says anything new (ADR 0023)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    instanceId: Int
    vmId: Int
    state: str


class HeartbeatKeyIn(BaseModel):
    """What of a ``HeartbeatIn`` a renewal reads (ADR 0023; ``frontends/rest/renewals.py``),
    the rest skipped unread: a report that is not a renewal is read whole by its route."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    load: float | None = None
    memory: Int | None = None
    cores: Int | None = None
    vms: list[VmKeyIn]
    witnessEpoch: Int | None = None
    fenced: list[Int] = Field(default_factory=list)
    underlay: str | None = Field(None, max_length=64)
    firewall: str | None = Field(None, max_length=64)


class HeartbeatOut(_Reply):
    hostId: int
    state: str
    up: bool


class VmEvent(_Model):
    """Something that happened to a VM on its own or as the end of an operation."""

    instanceId: Int
    vmId: Int | None = None
    kind: str = Field(
        description="started | exited | suspended | suspendFailed | paused | running | failed"
    )
    detail: str = ""
    at: datetime


class EventsIn(_Model):
    events: list[VmEvent]


class EventsOut(_Model):
    accepted: int


class StartIn(_Model):
    instance: InstanceWire
    resumeFrom: str | None = Field(
        None, description="suspend file (relative to the shared store) to restore from"
    )


class VmOut(_Model):
    instanceId: int
    vmId: int
    state: str


class SuspendIn(_Model):
    target: str = Field(description="file relative to the shared store's suspend area")


class IncomingIn(_Model):
    instance: InstanceWire


class TicketOut(_Model):
    host: str
    port: int


class MigrateIn(_Model):
    ticket: TicketOut


class MigrationOut(_Model):
    totalSeconds: float
    downtimeMs: float | None
    transferredBytes: int | None


class VmmCallIn(_Model):
    op: str
    arg: str = ""


class CpuShareIn(_Model):
    share: Int


class AttachDiskIn(_Model):
    """A volume to hot-plug into the running VM (``disk.device`` set, ``persistent``)."""

    disk: DiskWire


class AttachNicIn(_Model):
    """A NIC to hot-plug into the running VM, after its last one."""

    nic: NicWire


class DetachNicIn(_Model):
    """The VM's last NIC, to hot-unplug once its guest lets it go."""

    mac: str = Field(max_length=17, description="the NIC's MAC")
    timeout: float = Field(
        30.0, gt=0, le=600, description="seconds the guest has to let it go (then 409)"
    )


class NicsOut(_Model):
    """The NICs the VM has now, in order."""

    nics: list[NicWire]


class DetachDiskIn(_Model):
    """A volume to hot-unplug from the running VM, once its guest lets it go."""

    uri: str = Field(max_length=64, description="the disk's ``volume:<id>``")
    timeout: float = Field(
        30.0, gt=0, le=600, description="seconds the guest has to let it go (then 409)"
    )


class BackupDiskIn(_Model):
    """Copy a persistent disk of the running VM, as it is, into a snapshot's file."""

    uri: str = Field(max_length=255, description="the disk (``volume:<id>`` or an image name)")
    snapshot: str = Field(max_length=32, description="the snapshot id: its file in the store")
    timeout: float = Field(3600.0, gt=0, le=86400, description="seconds the copy may take")


class MessageOut(_Model):
    message: str


class HealthOut(_Model):
    status: str


class PeerLeaseIn(_Model):
    """A host asks one of its witnesses for a lease grant."""

    hostId: Int


class PeerLeaseOut(_Model):
    granted: bool


class GrantOut(_Model):
    """What a witness knows of its grants to a host (asked by the cluster manager)."""

    hostId: int
    lastGrantAge: float | None = Field(
        description="seconds since it last granted that host a lease (None: not since it started)"
    )
    uptime: float = Field(description="seconds since this witness started")
