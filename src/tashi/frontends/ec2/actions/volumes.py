"""Volumes: CreateVolume, DescribeVolumes, AttachVolume, DetachVolume, DeleteVolume, by
``clustermanager/volumes``.

A user sees and touches their own volumes; another's is ``InvalidVolume.NotFound`` as one that
does not exist (an administrator sees all). A volume lives in one of ``[Ec2] zones`` and is
attached to instances of that zone only (``InvalidVolume.ZoneMismatch``). The root disk
``RunInstances`` gives an instance is shown as a volume too (``vol-`` and the instance id's
digits, attached at ``/dev/vda``, deleted with its instance): it can be described and
snapshotted, not detached (``OperationNotPermitted``) nor deleted (``VolumeInUse``).

The service's refusals become AWS's codes in ``volume_errors``: ``VolumeInUse``,
``IncorrectState``, ``IncorrectInstanceState``, ``AttachmentLimitExceeded``,
``InvalidParameterValue`` for an attachment point in use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tashi.clustermanager.volumes.service import Listed, NewVolume, RootVolume
from tashi.domain import volumes as rules
from tashi.domain.errors import Forbidden, InvalidInput, InvalidState, NotFound
from tashi.domain.models import Instance, Principal
from tashi.domain.volumes import (
    AttachmentLimit,
    DeviceInUse,
    InstanceNotReady,
    UnknownSnapshot,
    UnknownVolume,
    Volume,
    VolumeInUse,
)
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.actions.tags import specified, tag_errors, tag_list
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page_answer
from tashi.frontends.ec2.instanceviews import launch_of

ROOT_DEVICE = "/dev/vda"
_VOLUME = re.compile(r"vol-([0-9a-f]{8}|[0-9a-f]{17})")
_SNAPSHOT = re.compile(r"snap-([0-9a-f]{8}|[0-9a-f]{17})")
_FILTERS = (
    "volume-id",
    "status",
    "size",
    "availability-zone",
    "volume-type",
    "snapshot-id",
    "encrypted",
    "attachment.instance-id",
    "attachment.status",
    "attachment.device",
    "attachment.delete-on-termination",
    "tag-key",
    "tag-value",
    "tag:",
)


def check_volume(text: str) -> str:
    if _VOLUME.fullmatch(text) is None:
        raise Ec2Error("InvalidVolumeID.Malformed", f'Invalid id: "{text}" (expecting "vol-...")')
    return text


def check_snapshot(text: str) -> str:
    if _SNAPSHOT.fullmatch(text) is None:
        raise Ec2Error(
            "InvalidSnapshotID.Malformed", f'Invalid id: "{text}" (expecting "snap-...")'
        )
    return text


@contextmanager
def volume_errors() -> Iterator[None]:
    """The volume service's refusals as EC2's codes."""
    try:
        yield
    except UnknownVolume as exc:
        raise Ec2Error("InvalidVolume.NotFound", exc.message) from exc
    except UnknownSnapshot as exc:
        raise Ec2Error("InvalidSnapshot.NotFound", exc.message) from exc
    except VolumeInUse as exc:
        raise Ec2Error("VolumeInUse", exc.message) from exc
    except InstanceNotReady as exc:
        raise Ec2Error("IncorrectInstanceState", exc.message) from exc
    except AttachmentLimit as exc:
        raise Ec2Error("AttachmentLimitExceeded", exc.message) from exc
    except DeviceInUse as exc:
        raise Ec2Error("InvalidParameterValue", exc.message) from exc
    except InvalidState as exc:
        raise Ec2Error("IncorrectState", exc.message) from exc
    except NotFound as exc:  # the instance named
        raise Ec2Error("InvalidInstanceID.NotFound", exc.message) from exc
    except InvalidInput as exc:
        raise Ec2Error("InvalidParameterValue", exc.message) from exc


# --- rendering -----------------------------------------------------------------------------


def attachment(volume: Volume) -> dict[str, Any] | None:
    point = volume.attachment
    if point is None:
        return None
    return {
        "AttachTime": point.attached_at,
        "Device": point.device,
        "InstanceId": ids.instance_id(point.instance_id),
        "State": rules.ec2_state(volume.state)[1],
        "VolumeId": volume.id,
        "DeleteOnTermination": point.delete_on_termination,
    }


def render(listed: Listed) -> dict[str, Any]:
    volume = listed.volume
    point = attachment(volume)
    return {
        "VolumeId": volume.id,
        "Size": volume.size,
        "SnapshotId": volume.snapshot_id or "",
        "AvailabilityZone": volume.zone,
        "State": rules.ec2_state(volume.state)[0],
        "CreateTime": volume.created_at,
        "Attachments": [point] if point is not None else [],
        "Encrypted": False,
        "VolumeType": volume.volume_type,
        "MultiAttachEnabled": False,
        "Tags": tag_list(listed.tags),
    }


def render_root(root: RootVolume, zone: str) -> dict[str, Any]:
    inst = root.instance
    copying = bool(inst.disks and inst.disks[0].copy)  # its copy is still to be made
    return {
        "VolumeId": root.id,
        "Size": root.size,
        "SnapshotId": "",
        "AvailabilityZone": root.zone or zone,
        "State": "in-use",
        "CreateTime": inst.created_at,
        "Attachments": [
            {
                "AttachTime": inst.created_at,
                "Device": ROOT_DEVICE,
                "InstanceId": ids.instance_id(inst.id),
                "State": "attaching" if copying else "attached",
                "VolumeId": root.id,
                "DeleteOnTermination": root.delete_on_termination,
            }
        ],
        "Encrypted": False,
        "VolumeType": "standard",
        "MultiAttachEnabled": False,
        "Tags": [],
    }


def _values(shown: Mapping[str, Any]) -> dict[str, list[str]]:
    tags = {t["Key"]: t["Value"] for t in shown["Tags"]}
    points = shown["Attachments"]
    values = {
        "volume-id": [shown["VolumeId"]],
        "status": [shown["State"]],
        "size": [str(shown["Size"])],
        "availability-zone": [shown["AvailabilityZone"]],
        "volume-type": [shown["VolumeType"]],
        "snapshot-id": [shown["SnapshotId"]],
        "encrypted": ["false"],
        "attachment.instance-id": [p["InstanceId"] for p in points],
        "attachment.status": [p["State"] for p in points],
        "attachment.device": [p["Device"] for p in points],
        "attachment.delete-on-termination": [str(p["DeleteOnTermination"]).lower() for p in points],
        "tag-key": list(tags),
        "tag-value": list(tags.values()),
    }
    values.update({f"tag:{k}": [v] for k, v in tags.items()})
    return values


# --- the actions -----------------------------------------------------------------------------


def zone_of(ctx: Ec2Context, text: str | None) -> str:
    if not text:
        raise Ec2Error(
            "MissingParameter", "The request must contain the parameter AvailabilityZone"
        )
    if text not in ctx.zones:
        raise Ec2Error("InvalidZone.NotFound", f"The zone '{text}' does not exist.")
    return text


def _refuse_unsupported(params: Params) -> None:
    if params.get("Encrypted"):
        raise Ec2Error("InvalidParameterValue", "Tashi's volumes are not encrypted")
    if params.get("MultiAttachEnabled"):
        raise Ec2Error("InvalidParameterValue", "Tashi's volumes attach to one instance at a time")


async def create_volume(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    zone = zone_of(ctx, params.get("AvailabilityZone"))
    snapshot = params.get("SnapshotId")
    if snapshot:
        check_snapshot(snapshot)
    size = params.get("Size")
    if size is None and not snapshot:
        raise Ec2Error(
            "MissingParameter", "The request must contain the parameter size or snapshotId"
        )
    _refuse_unsupported(params)
    asked = NewVolume(size, zone, params.get("VolumeType") or "gp2", snapshot or None)
    tags = specified(params, "volume")
    with volume_errors(), tag_errors():
        made = await ctx.service.volumes.create(caller, asked, tags)
    return render(made)


async def shown_volumes(ctx: Ec2Context, caller: Principal) -> list[dict[str, Any]]:
    """Every volume the caller may see, root disks included, by id."""
    listed = [render(v) for v in await ctx.service.volumes.describe(caller)]
    roots = [render_root(r, ctx.zones[0]) for r in await ctx.service.volumes.roots(caller)]
    return sorted(listed + roots, key=lambda v: str(v["VolumeId"]))


async def describe_volumes(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    wanted = [check_volume(v) for v in params.get("VolumeIds") or []]
    matches = compile_filters(params.get("Filters"), _FILTERS, "DescribeVolumes")
    shown = await shown_volumes(ctx, caller)
    if wanted:
        if params.get("MaxResults") is not None:
            raise Ec2Error(
                "InvalidParameterCombination",
                "The parameter volumeSet cannot be used with the parameter maxResults",
            )
        have = {str(v["VolumeId"]) for v in shown}
        missing = [v for v in wanted if v not in have]
        if missing:
            raise Ec2Error(
                "InvalidVolume.NotFound", f"The volume '{', '.join(missing)}' does not exist."
            )
        shown = [v for v in shown if v["VolumeId"] in wanted]
    shown = [v for v in shown if matches(_values(v))]
    return page_answer(
        "Volumes",
        shown,
        lambda v: str(v["VolumeId"]),
        params,
        listing="volumes",
        minimum=5,
        maximum=500,
    )


async def _instance(ctx: Ec2Context, caller: Principal, instance_id: str) -> Instance:
    """The caller's instance (any, for an administrator); another's is not found."""
    number = ids.parse_instance(instance_id)
    try:
        return await ctx.service.instances.get(caller, str(number))
    except (NotFound, Forbidden):
        raise Ec2Error(
            "InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist"
        ) from None


async def attach_volume(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    volume_id = check_volume(params["VolumeId"])
    inst = await _instance(ctx, caller, params["InstanceId"])
    device = params["Device"]
    with volume_errors():
        rules.device_index(device)
    shown = {str(v["VolumeId"]): v for v in await shown_volumes(ctx, caller)}
    volume = shown.get(volume_id)
    if volume is None:
        raise Ec2Error("InvalidVolume.NotFound", f"The volume '{volume_id}' does not exist.")
    zone = launch_of(inst, ctx.defaults).zone
    if volume["AvailabilityZone"] != zone:
        raise Ec2Error(
            "InvalidVolume.ZoneMismatch",
            f"The volume '{volume_id}' is not in the same availability zone as instance"
            f" '{ids.instance_id(inst.id)}'",
        )
    with volume_errors():
        attached = await ctx.service.volumes.attach(caller, volume_id, inst.id, device)
    out = attachment(attached)
    assert out is not None
    return out


async def detach_volume(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    volume_id = check_volume(params["VolumeId"])
    instance = ids.parse_instance(params["InstanceId"]) if params.get("InstanceId") else None
    shown = {str(v["VolumeId"]): v for v in await shown_volumes(ctx, caller)}
    before = shown.get(volume_id)
    if before is None:
        raise Ec2Error("InvalidVolume.NotFound", f"The volume '{volume_id}' does not exist.")
    if rules.root_instance(volume_id) is not None:
        raise Ec2Error(
            "OperationNotPermitted",
            f"The volume '{volume_id}' is the root device of its instance: it stays with it",
        )
    points = before["Attachments"]
    device = params.get("Device")
    if points and (
        (instance is not None and points[0]["InstanceId"] != ids.instance_id(instance))
        or (device and points[0]["Device"] != device)
    ):
        raise Ec2Error(
            "InvalidAttachment.NotFound",
            f"The volume '{volume_id}' is not attached to the instance or device named",
        )
    if not points:
        raise Ec2Error("IncorrectState", f"Volume '{volume_id}' is in the 'available' state.")
    with volume_errors():
        after = await ctx.service.volumes.detach(caller, volume_id, force=bool(params.get("Force")))
    state = rules.ec2_state(after.state)[1] or "detached"
    return {**points[0], "State": state}


async def delete_volume(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    volume_id = check_volume(params["VolumeId"])
    with volume_errors():
        await ctx.service.volumes.delete(caller, volume_id)
    return {}


HANDLERS: Mapping[str, Handler] = {
    "CreateVolume": create_volume,
    "DescribeVolumes": describe_volumes,
    "AttachVolume": attach_volume,
    "DetachVolume": detach_volume,
    "DeleteVolume": delete_volume,
}
