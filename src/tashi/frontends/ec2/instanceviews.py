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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tashi.domain.launches import Launch, tags
from tashi.domain.models import Instance
from tashi.domain.secgroups import named_groups_of
from tashi.domain.states import InstanceState
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


def render(inst: Instance, launch: Launch, index: int, current: InstanceState) -> dict[str, Any]:
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
        "RootDeviceType": "ebs",
        "RootDeviceName": "/dev/vda",
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
    if inst.nics and inst.nics[0].ip:
        out["PrivateIpAddress"] = inst.nics[0].ip
    if launch.key_name:
        out["KeyName"] = launch.key_name
    return out


@dataclass
class Terminated:
    """Instances terminated through the EC2 API, as they were last shown, for an hour (AWS
    describes them that long; the record itself is gone from Tashi at once). In memory: a
    restart of the cluster manager forgets them."""

    clock: Any = time.monotonic
    _kept: dict[int, tuple[int, str, dict[str, Any], float]] = field(default_factory=dict)

    def keep(self, owner: int, reservation: str, shown: dict[str, Any]) -> None:
        self._purge()
        gone = {**shown, "State": {"Code": TERMINATED[0], "Name": TERMINATED[1]}}
        gone.pop("PrivateIpAddress", None)
        iid = int(str(shown["InstanceId"])[2:], 16)
        self._kept[iid] = (owner, reservation, gone, self.clock() + KEEP_TERMINATED)

    def of(self, owner: int | None) -> Iterable[tuple[int, int, str, dict[str, Any]]]:
        """(instance id, owner, reservation, rendering) of the kept ones (``owner`` None:
        everyone's)."""
        self._purge()
        for iid, (who, reservation, shown, _) in sorted(self._kept.items()):
            if owner is None or who == owner:
                yield iid, who, reservation, shown

    def _purge(self) -> None:
        now = self.clock()
        for iid in [i for i, kept in self._kept.items() if kept[3] <= now]:
            del self._kept[iid]
