"""Snapshots: CreateSnapshot, DescribeSnapshots, DeleteSnapshot, by ``clustermanager/volumes``.

A snapshot is a qcow2 copy of a volume (or of an instance's root volume) in the shared store:
``pending`` until the copy is whole, then ``completed`` (``error`` if it failed). A disk a
running VM writes is copied by its node manager with QEMU's ``blockdev-backup`` while the guest
runs on (the disk as it was when the copy began), any other directly; a volume whose instance is
starting, stopping or migrating is refused (``IncorrectState``). Users see their own snapshots
(``OwnerIds`` ``self`` or their account), administrators all; none is public.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tashi.clustermanager.volumes.service import ListedSnapshot
from tashi.domain.models import Principal
from tashi.domain.volumes import SnapshotState
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.actions.tags import specified, tag_errors, tag_list
from tashi.frontends.ec2.actions.volumes import check_snapshot, check_volume, volume_errors
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page_answer

_FILTERS = (
    "snapshot-id",
    "volume-id",
    "status",
    "owner-id",
    "description",
    "volume-size",
    "progress",
    "encrypted",
    "tag-key",
    "tag-value",
    "tag:",
)


def render(listed: ListedSnapshot) -> dict[str, Any]:
    snap = listed.snapshot
    return {
        "SnapshotId": snap.id,
        "VolumeId": snap.volume_id,
        "State": snap.state.value,
        "StartTime": snap.started_at,
        "Progress": "100%" if snap.state is SnapshotState.completed else "0%",
        "OwnerId": ids.account(snap.user_id),
        "Description": snap.description,
        "VolumeSize": snap.volume_size,
        "Encrypted": False,
        "StorageTier": "standard",
        "Tags": tag_list(listed.tags),
    }


def _values(shown: Mapping[str, Any]) -> dict[str, list[str]]:
    tags = {t["Key"]: t["Value"] for t in shown["Tags"]}
    values = {
        "snapshot-id": [shown["SnapshotId"]],
        "volume-id": [shown["VolumeId"]],
        "status": [shown["State"]],
        "owner-id": [shown["OwnerId"]],
        "description": [shown["Description"]],
        "volume-size": [str(shown["VolumeSize"])],
        "progress": [shown["Progress"]],
        "encrypted": ["false"],
        "tag-key": list(tags),
        "tag-value": list(tags.values()),
    }
    values.update({f"tag:{k}": [v] for k, v in tags.items()})
    return values


async def create_snapshot(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    volume_id = check_volume(params["VolumeId"])
    tags = specified(params, "snapshot")
    with volume_errors(), tag_errors():
        made = await ctx.service.volumes.create_snapshot(
            caller, volume_id, params.get("Description"), tags
        )
    return render(made)


def _owners(params: Params, caller: Principal) -> set[str] | None:
    """The accounts ``OwnerIds`` names (``self``: the caller's); ``None``: any."""
    owners = params.get("OwnerIds") or []
    if not owners:
        return None
    return {ids.account(caller.user_id) if o == "self" else str(o) for o in owners}


async def describe_snapshots(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    wanted = [check_snapshot(s) for s in params.get("SnapshotIds") or []]
    matches = compile_filters(params.get("Filters"), _FILTERS, "DescribeSnapshots")
    owners = _owners(params, caller)
    shown = [render(s) for s in await ctx.service.volumes.snapshots(caller)]
    if wanted:
        if params.get("MaxResults") is not None:
            raise Ec2Error(
                "InvalidParameterCombination",
                "The parameter snapshotSet cannot be used with the parameter maxResults",
            )
        missing = [s for s in wanted if s not in {v["SnapshotId"] for v in shown}]
        if missing:
            raise Ec2Error(
                "InvalidSnapshot.NotFound", f"The snapshot '{', '.join(missing)}' does not exist."
            )
        shown = [s for s in shown if s["SnapshotId"] in wanted]
    shown = [s for s in shown if (owners is None or s["OwnerId"] in owners) and matches(_values(s))]
    return page_answer(
        "Snapshots",
        shown,
        lambda s: str(s["SnapshotId"]),
        params,
        listing="snapshots",
        minimum=5,
        maximum=1000,
    )


async def delete_snapshot(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    snapshot_id = check_snapshot(params["SnapshotId"])
    with volume_errors():
        await ctx.service.volumes.delete_snapshot(caller, snapshot_id)
    return {}


HANDLERS: Mapping[str, Handler] = {
    "CreateSnapshot": create_snapshot,
    "DescribeSnapshots": describe_snapshots,
    "DeleteSnapshot": delete_snapshot,
}
