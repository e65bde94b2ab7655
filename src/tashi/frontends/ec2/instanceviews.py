"""How an instance looks in EC2's answers: its state by EC2's six names, its reservation, its
placement, its network interfaces, its security groups, its tags.

Tashi's states map onto EC2's: waiting or starting is ``pending``; running, pausing, paused,
migrating or being suspended is ``running`` (the VM exists and keeps its address); being
destroyed is ``shutting-down``; stopping or suspending is ``stopping``; stopped or suspended is
``stopped``; a record that is gone was
``terminated`` (``Terminated`` keeps those an hour, as AWS shows them). An instance whose host
has not reported since the cluster manager started is ``pending`` only if it never ran; a
``Running`` one stays ``running`` (``instanceState`` says what Tashi knows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tashi.domain.launches import Launch, tags
from tashi.domain.models import Instance
from tashi.domain.secgroups import named_groups_of
from tashi.domain.states import InstanceState
from tashi.domain.volumes import ROOT_DEVICE, Volume, ec2_state, root_volume_id, volume_of
from tashi.frontends.ec2 import ids

S = InstanceState
PENDING, RUNNING, SHUTTING_DOWN, TERMINATED, STOPPING, STOPPED = (
    (0, "pending"),
    (16, "running"),
    (32, "shutting-down"),
    (48, "terminated"),
    (64, "stopping"),
    (80, "stopped"),
)
STATES: Mapping[InstanceState, tuple[int, str]] = {
    S.Pending: PENDING,
    S.Held: PENDING,
    S.PreparingDisk: PENDING,
    S.Activating: PENDING,
    S.Resuming: PENDING,
    S.Running: RUNNING,
    S.Pausing: RUNNING,
    S.Paused: RUNNING,
    S.Unpausing: RUNNING,
    S.MigratePrep: RUNNING,
    S.MigrateTrans: RUNNING,
    S.Orphaned: RUNNING,
    S.Suspending: STOPPING,
    S.Suspended: STOPPED,
    S.Stopping: STOPPING,
    S.Stopped: STOPPED,
    S.ShuttingDown: SHUTTING_DOWN,
    S.Destroying: SHUTTING_DOWN,
    S.Exited: TERMINATED,
}
KEEP_TERMINATED = 3600.0  # seconds a terminated instance is still described


def state(inst_state: InstanceState) -> dict[str, Any]:
    code, name = STATES[inst_state]
    return {"Code": code, "Name": name}


@dataclass(frozen=True, slots=True)
class Defaults:
    """What an instance made without the EC2 API is shown with."""

    zone: str
    instance_type: str


def launch_of(inst: Instance, defaults: Defaults) -> Launch:
    found = Launch.of(inst.hints)
    if found is not None:
        return found
    return Launch(
        reservation=f"r-{inst.id:017x}",
        image=ids.image_id(inst.disks[0].uri) if inst.disks else "",
        instance_type=defaults.instance_type,
        zone=defaults.zone,
        tags=tags(inst.hints),
    )


def root_device_type(inst: Instance) -> str:
    """``ebs`` for an instance whose root disk is its own (persistent, in the store: shown as a
    volume, kept when it stops); ``instance-store`` for one whose root is a copy-on-write
    overlay on its host, gone with the VM (``createVm`` of a shared image)."""
    return "ebs" if inst.disks and inst.disks[0].persistent else "instance-store"


def block_devices(
    inst: Instance, current: InstanceState, volumes: Mapping[str, Volume]
) -> list[dict[str, Any]]:
    """EC2's ``BlockDeviceMappings`` of ``inst``: its root volume at ``/dev/vda`` (an ``ebs``
    root only: the id, attach time and status DescribeVolumes shows for it) and each volume
    attached to it, at its device, as the volume's record (``volumes``, by id) says. A
    terminated instance has none, as in AWS."""
    if current is S.Exited:
        return []
    out: list[dict[str, Any]] = []
    if root_device_type(inst) == "ebs":
        copying = inst.disks[0].copy  # its copy is still to be made
        ebs = {
            "AttachTime": inst.created_at,
            "DeleteOnTermination": Launch.of(inst.hints) is not None,
            "Status": "attaching" if copying else "attached",
            "VolumeId": root_volume_id(inst.id),
        }
        out.append({"DeviceName": ROOT_DEVICE, "Ebs": ebs})
    for disk in inst.disks[1:]:
        volume_id = volume_of(disk.uri)
        if volume_id is None:
            continue
        found = volumes.get(volume_id)
        point = found.attachment if found is not None else None
        if found is None or point is None or point.instance_id != inst.id:
            # its record moved on since the instance was read: the disk is still there
            ebs = {"Status": "attached", "VolumeId": volume_id}
            out.append({"DeviceName": disk.device or "", "Ebs": ebs})
            continue
        ebs = {
            "AttachTime": point.attached_at,
            "DeleteOnTermination": point.delete_on_termination,
            "Status": ec2_state(found.state)[1] or "attached",
            "VolumeId": volume_id,
        }
        out.append({"DeviceName": disk.device or point.device, "Ebs": ebs})
    return out


def volume_ids(inst: Instance) -> list[str]:
    """The volumes attached to ``inst`` (its disks that are volumes), by its record."""
    if len(inst.disks) < 2:  # most instances: only a root disk, never a volume
        return []
    return [v for d in inst.disks[1:] if (v := volume_of(d.uri)) is not None]


def render(
    inst: Instance,
    launch: Launch,
    index: int,
    current: InstanceState,
    volumes: Mapping[str, Volume] | None = None,
) -> dict[str, Any]:
    """``inst`` as EC2's ``Instance`` shape, in state ``current`` (``Exited``: terminated, its
    address and devices gone); ``volumes`` are the records of the volumes attached to it."""
    nics = [
        {
            "NetworkInterfaceId": f"eni-{inst.id:09x}{n:08x}",
            "MacAddress": nic.mac,
            "PrivateIpAddress": nic.ip,
            "Status": "in-use",
            "Attachment": {"DeviceIndex": n, "Status": "attached"},
        }
        for n, nic in enumerate(inst.nics)
    ]
    out: dict[str, Any] = {
        "InstanceId": ids.instance_id(inst.id),
        "ImageId": launch.image,
        "InstanceType": launch.instance_type,
        "State": state(current),
        "StateTransitionReason": inst.reason or "",
        "AmiLaunchIndex": index,
        "LaunchTime": inst.created_at,
        "Placement": {"AvailabilityZone": launch.zone, "Tenancy": "default"},
        "PrivateDnsName": inst.name,
        "PublicDnsName": "",
        "Architecture": "x86_64",
        "BlockDeviceMappings": block_devices(inst, current, volumes or {}),
        "RootDeviceType": root_device_type(inst),
        "RootDeviceName": ROOT_DEVICE,
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "Monitoring": {"State": "disabled"},
        "EbsOptimized": False,
        "ClientToken": launch.client_token or "",
        "CpuOptions": {"CoreCount": inst.cores, "ThreadsPerCore": 1},
        "NetworkInterfaces": nics,
        "SecurityGroups": [
            {"GroupName": name or ref, "GroupId": ref} for ref, name in named_groups_of(inst.hints)
        ],
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(launch.tags.items())],
    }
    if inst.nics and inst.nics[0].ip and current is not S.Exited:
        out["PrivateIpAddress"] = inst.nics[0].ip
    if launch.key_name:
        out["KeyName"] = launch.key_name
    return out


def _private_ip(shown: Shown) -> str:
    nics = shown.inst.nics
    return (nics[0].ip or "") if nics and shown.state is not S.Exited else ""


#: DescribeInstances' filters (but ``tag:KEY``): each name's values for an instance
FILTER_VALUES: Mapping[str, Callable[[Shown], list[str]]] = {
    "instance-id": lambda s: [ids.instance_id(s.inst.id)],
    "instance-state-name": lambda s: [STATES[s.state][1]],
    "instance-state-code": lambda s: [str(STATES[s.state][0])],
    "image-id": lambda s: [s.launch.image],
    "instance-type": lambda s: [s.launch.instance_type],
    "private-ip-address": lambda s: [_private_ip(s)],
    "private-dns-name": lambda s: [s.inst.name],
    "reservation-id": lambda s: [s.launch.reservation],
    "availability-zone": lambda s: [s.launch.zone],
    "key-name": lambda s: [s.launch.key_name or ""],
    "client-token": lambda s: [s.launch.client_token or ""],
    "launch-index": lambda s: [str(s.launch_index)],
    "tag-key": lambda s: list(s.launch.tags),
    "tag-value": lambda s: list(s.launch.tags.values()),
}


def states_named(filters: Iterable[Mapping[str, Any]] | None) -> tuple[str, ...] | None:
    """The Tashi states (names) ``instance-state-name`` filters leave, for the store to choose
    them; ``None`` when they leave any (no such filter, or a value with a wildcard)."""
    chosen: set[InstanceState] | None = None
    for f in filters or ():
        if f.get("Name") != "instance-state-name":
            continue
        values = f.get("Values") or []
        if any(c in v for v in values for c in "*?\\"):
            return None
        named = {s for s, (_, name) in STATES.items() if name in values}
        chosen = named if chosen is None else chosen & named
    return None if chosen is None else tuple(sorted(s.name for s in chosen))


class FilterValues(Mapping[str, list[str]]):
    """What an instance offers DescribeInstances' filters (``filters.compile_filters``), from
    its record: each name's values are made when a filter asks for them, so that a filter
    costs what it reads, and nothing is rendered for an instance it leaves out."""

    __slots__ = ("_shown",)

    def __init__(self, shown: Shown) -> None:
        self._shown = shown

    def __getitem__(self, name: str) -> list[str]:
        if name.startswith("tag:"):
            value = self._shown.launch.tags.get(name[4:])
            if value is None:
                raise KeyError(name)
            return [value]
        return FILTER_VALUES[name](self._shown)

    def __iter__(self) -> Iterator[str]:
        yield from FILTER_VALUES
        yield from (f"tag:{k}" for k in self._shown.launch.tags)

    def __len__(self) -> int:
        return len(FILTER_VALUES) + len(self._shown.launch.tags)


class Shown(NamedTuple):
    """An instance as DescribeInstances lists it: its record, its launch (``launch_of``), its
    ``AmiLaunchIndex`` and its state (``Exited`` for a terminated one ``Terminated`` keeps)."""

    inst: Instance
    launch: Launch
    launch_index: int
    state: InstanceState


def shown(
    items: Iterable[Instance],
    defaults: Defaults,
    launch_of: Callable[[Instance, Defaults], Launch] = launch_of,
) -> list[Shown]:
    """``items`` as DescribeInstances lists them, by id, each with its launch (by
    ``launch_of``) and its ``AmiLaunchIndex`` (``launch_index``)."""
    out = []
    for inst in sorted(items, key=lambda i: i.id):
        launch = launch_of(inst, defaults)
        out.append(Shown(inst, launch, launch_index(inst, launch), inst.state))
    return out


def launch_index(inst: Instance, launch: Launch) -> int:
    """An instance's place in its launch, fixed when it was made: RunInstances names the
    instances of a reservation ``r-…-0``, ``r-…-1``... (one alone: ``r-…``, 0); an instance made
    without RunInstances is alone in its own reservation, 0."""
    prefix = launch.reservation + "-"
    if inst.name.startswith(prefix) and inst.name[len(prefix) :].isdigit():
        return int(inst.name[len(prefix) :])
    return 0


@dataclass
class Terminated:
    """Instances terminated through the EC2 API, as they were last read, for an hour (AWS
    describes them that long; the record itself is gone from Tashi at once). In memory: a
    restart of the cluster manager forgets them."""

    clock: Any = time.monotonic
    _kept: dict[int, tuple[Shown, float]] = field(default_factory=dict)

    def keep(self, inst: Instance, launch: Launch, index: int) -> None:
        self._purge()
        self._kept[inst.id] = (Shown(inst, launch, index, S.Exited), self.clock() + KEEP_TERMINATED)

    def of(self, owner: int | None) -> Iterable[Shown]:
        """The kept ones (``owner`` None: everyone's), by id."""
        self._purge()
        for _, (shown, _) in sorted(self._kept.items()):
            if owner is None or shown.inst.user_id == owner:
                yield shown

    def _purge(self) -> None:
        now = self.clock()
        for iid in [i for i, kept in self._kept.items() if kept[1] <= now]:
            del self._kept[iid]
