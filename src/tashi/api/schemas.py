"""Wire models of the public API. Field names are camelCase, as in the original Tashi.

Requests are validated for shape here (types, required fields); the meaning (limits, names,
ownership) is checked by the cluster manager's services so that every front-end gets the same
rules. Responses carry everything a client needs to render Tashi's tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tashi.domain.ids import INT_MAX

#: An integer a request may carry into the store unchecked (ids, a host's size): one out of
#: range is refused (400) at the edge rather than failing in the database (a 500). Those the
#: services bound themselves (cores, memory, cpuShare, priority, count) keep their message.
Int = Annotated[int, Field(ge=-INT_MAX - 1, le=INT_MAX)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorBody(_Model):
    code: str
    message: str = Field(
        description="for a person; a failure of something Tashi depends on (its database, a"
        " node manager, a file, a program) is a fixed sentence, its detail in the server's log"
        " under requestId"
    )
    requestId: str | None = Field(
        default=None,
        description="the id of the request answered (also its X-Request-Id header), under"
        " which the server logged what it did not say",
    )


class ErrorOut(_Model):
    """Every non-2xx answer: ``{"error": {"code": "not_found", "message": "...",
    "requestId": "..."}}``."""

    error: ErrorBody


# --- authentication -----------------------------------------------------------------------


class LoginIn(_Model):
    username: str
    password: str


class UserOut(_Model):
    id: int
    name: str
    role: str
    priority: int
    createdAt: datetime | None = None


class TokenOut(_Model):
    token: str
    expiresAt: datetime
    user: UserOut


# --- instances ----------------------------------------------------------------------------


class _Disk(_Model):
    # ``copy`` on the wire; ``copy_`` in Python, where ``copy`` is a (deprecated) BaseModel method.
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class DiskIn(_Disk):
    uri: str = Field(description="name of an image in the image store (never a path)")
    persistent: bool = False
    copy_: bool = Field(
        False,
        alias="copy",
        description="SLA@SOI: give the VM its own persistent copy of this template image,"
        " made when it is first activated (state PreparingDisk); implies persistent",
    )


class NicIn(_Model):
    network: Int | None = Field(None, description="network id; default: defaultNetwork")
    ip: str | None = None
    mac: str | None = Field(None, description="default: a random unused 52:54:00:xx:xx:xx")


class InstanceIn(_Model):
    """``createVm``. Without ``nics`` the VM gets one NIC on the default network."""

    name: str
    cores: int = 1
    memory: int = 128
    cpuShare: int = 1024
    disks: list[DiskIn] = Field(min_length=1)
    nics: list[NicIn] | None = None
    hints: dict[str, str] = Field(default_factory=dict)
    groupName: str | None = None
    userId: Int | None = Field(None, description="owner; only an admin may name another user")


class CreateManyIn(_Model):
    """``createMany``: ``count`` instances named ``basename-NN``, all or none."""

    basename: str
    count: int = Field(ge=1)
    cores: int = 1
    memory: int = 128
    cpuShare: int = 1024
    disks: list[DiskIn] = Field(min_length=1)
    nics: list[NicIn] | None = Field(None, description="per VM; MACs must be left empty")
    hints: dict[str, str] = Field(default_factory=dict)
    groupName: str | None = None
    userId: Int | None = None


class DiskOut(_Disk):
    uri: str
    persistent: bool
    copy_: bool = Field(False, alias="copy")  # the copy of the template is still to be made


class NicOut(_Model):
    network: int
    mac: str
    ip: str | None


class InstanceOut(_Model):
    id: int
    name: str
    userId: int
    user: str
    state: str
    hostId: int | None
    vmId: int | None
    cores: int
    memory: int
    cpuShare: int
    disks: list[DiskOut]
    nics: list[NicOut]
    hints: dict[str, str]
    groupName: str | None
    reason: str | None
    createdAt: datetime | None
    stateSince: datetime | None
    confirmed: bool = Field(
        True,
        description="false while the instance's host has not reported since the cluster"
        " manager started: its state is the last one known, not a fact",
    )
    lastReport: datetime | None = Field(
        None, description="when the instance's host last reported its VMs (on a host only)"
    )


class InstanceEventOut(_Model):
    """One line of an instance's history."""

    id: int
    instanceId: int
    at: datetime
    kind: str
    message: str


class BatchSelectIn(_Model):
    """Which instances a batch verb acts on: ``basename`` (``basename-<digits>``) or ``ids``."""

    basename: str | None = None
    ids: list[Int] | None = None


class BatchFailure(_Model):
    id: int
    name: str
    error: ErrorBody


class BatchResultOut(_Model):
    done: list[InstanceOut]
    removed: list[int] = Field(description="ids removed at once (Pending/Held/Suspended)")
    failed: list[BatchFailure]


class MigrateIn(_Model):
    targetHost: str = Field(description="host id or name")


class CpuShareIn(_Model):
    """SLA@SOI ``adaptCpuShare``: the VM's new relative CPU weight (default 1024)."""

    share: int


class VmmCallIn(_Model):
    arg: str


class ActivateIn(_Model):
    host: str = Field(description="host id or name")


class NicAddressIn(_Model):
    """Allocate a NIC's address (the DHCP/DNS hook): the lowest free one of ``range``, or the
    one the NIC already has; the same NIC asking again gets the same address."""

    range: str = Field(description="first-last IPv4 address, e.g. 198.19.1.10-198.19.1.200")


class NicAddressOut(_Model):
    instanceId: int
    index: int
    network: int
    mac: str
    ip: str


class AddressOut(_Model):
    network: int
    ip: str
    instanceId: int
    nicIndex: int


class PlacementIn(_Model):
    instance: str = Field(description="instance id or name")
    host: str = Field(description="host id or name")


class ActivateGroupIn(_Model):
    """activateGroup (agents): a host for every member of one group; all are placed in one
    transaction or none is (ADR 0009)."""

    placements: list[PlacementIn] = Field(min_length=1)


class HoldIn(_Model):
    """holdVm (agents): why the instance cannot be placed now; shown as its ``reason``."""

    reason: str = Field(min_length=1, max_length=1000)


class ChangesOut(_Model):
    """The change feed's version (``GET /v1/instances:changes``): it differs from the ``after``
    a caller sent once instances (or hosts' up/state/capacity/reservations) changed."""

    version: int


class MessageOut(_Model):
    message: str


# --- hosts, networks, users, images -------------------------------------------------------


class HostIn(_Model):
    """``registerHost``/``addHost``: the node manager fills memory/cores/version on heartbeat."""

    name: str
    memory: Int = 0
    cores: Int = 0
    version: str = ""


class HostOut(_Model):
    id: int
    name: str
    up: bool
    decayed: bool
    state: str
    memory: int
    cores: int
    cpuSpeed: int
    version: str
    notes: str
    reserved: list[int]
    config: dict[str, str]
    lastHeartbeat: datetime | None
    confirmed: bool = Field(
        True, description="false while the host has not reported since the cluster manager started"
    )
    load: float | None
    usedMemory: int = Field(0, description="MB taken by the instances placed on the host")
    usedCores: int = Field(0, description="cores taken by the instances placed on the host")
    instances: int = Field(0, description="how many instances are placed on the host")


class HostStateIn(_Model):
    state: str = Field(description="Normal or Drained (any case)")


class HostNotesIn(_Model):
    notes: str


class HostConfigIn(_Model):
    """SLA@SOI ``setHostConfig``: elements to set; an empty value removes the element."""

    config: dict[str, str]


class ReservationOut(_Model):
    hostId: int
    hostName: str
    users: list[UserOut]


class NetworkIn(_Model):
    id: int = Field(ge=0, le=16777215, description="VLAN/VNI number, chosen by the admin")
    name: str


class NetworkOut(_Model):
    id: int
    name: str
    default: bool


class UserIn(_Model):
    """``registerUser --name --passwd --priority`` (admin)."""

    name: str
    password: str
    priority: int = 0
    role: str = "user"


class AccessKeyIn(_Model):
    """``createAccessKey``: for whom (admins only may name another user; default: oneself)."""

    user: str | None = None


class AccessKeyOut(_Model):
    """An access key of the EC2 API; ``secretAccessKey`` only in ``createAccessKey``'s answer,
    the one time it is told."""

    accessKeyId: str
    user: str
    createdAt: datetime
    secretAccessKey: str | None = None


class ImageOut(_Model):
    id: int
    imageName: str
    imageSize: int
    format: str
    virtualSize: int | None


class ImageOpIn(_Model):
    """``copyImage``/``cloneImage``/``rebaseImage``: make image ``dst`` from image ``src``."""

    op: Literal["copy", "clone", "rebase"] = Field(
        description="copy: the same bytes; clone: a qcow2 overlay backed by src;"
        " rebase: src flattened into a standalone qcow2"
    )
    src: str = Field(description="an image of the store (a name, never a path)")
    dst: str = Field(description="the new image's name; it must not exist")


class ImageTaskOut(_Model):
    """An image operation running in the cluster manager; ``image`` is set once it is done,
    ``error`` once it has failed. Poll ``GET /v1/imageTasks/{id}`` until ``state`` is done or
    failed."""

    id: int
    op: str
    src: str
    dst: str
    userId: int
    user: str
    state: Literal["queued", "running", "done", "failed"]
    createdAt: datetime
    startedAt: datetime | None
    finishedAt: datetime | None
    image: ImageOut | None
    error: ErrorBody | None


class HealthOut(_Model):
    status: str
    version: str
