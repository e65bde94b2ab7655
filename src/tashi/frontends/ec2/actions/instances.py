"""Instances: RunInstances, DescribeInstances, TerminateInstances.

``RunInstances`` launches MinCount to MaxCount instances of an image and a type: as many as the
hosts open to the caller have room for now, up to MaxCount; fewer than MinCount and nothing is
made (``InsufficientInstanceCapacity``). Two or more are one group (``createMany``), which the
scheduler starts all or nothing (ADR 0009). What the launch asked for is kept on each instance
(``domain/launches.py``). A ClientToken makes a retry answer the first launch instead of making
another; the same token with other parameters is ``IdempotentParameterMismatch``.

The instances a user may see are their own (an administrator sees all); an id that is not one
of them is ``InvalidInstanceID.NotFound``, whether it exists or not.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from tashi.clustermanager.instances.specs import many_names
from tashi.domain.errors import NotFound, TashiError
from tashi.domain.launches import PREFIX, Launch
from tashi.domain.models import Instance, Principal
from tashi.domain.operations import DiskRequest, InstanceQuery, VmRequest
from tashi.domain.states import InstanceState
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.actions import blockdevices
from tashi.frontends.ec2.actions.discovery import ACCOUNT
from tashi.frontends.ec2.actions.images import by_id
from tashi.frontends.ec2.actions.keypairs import launch_key
from tashi.frontends.ec2.actions.secgroups import launch_groups
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page_answer
from tashi.frontends.ec2.instanceviews import launch_of, render, state

log = logging.getLogger(__name__)

MAX_USER_DATA = 16384  # bytes, decoded, as AWS
MAX_INSTANCES = int(ACCOUNT["max-instances"][0])  # per user, as DescribeAccountAttributes says
_FILTERS = (
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "image-id",
    "instance-type",
    "private-ip-address",
    "private-dns-name",
    "reservation-id",
    "availability-zone",
    "key-name",
    "client-token",
    "launch-index",
    "tag-key",
    "tag-value",
    "tag:",
)


def _counts(params: Params) -> tuple[int, int]:
    low, high = params["MinCount"], params["MaxCount"]
    if low < 1:
        raise Ec2Error("InvalidParameterValue", f"Value ({low}) for parameter MinCount is invalid")
    if high < low:
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ({high}) for parameter MaxCount is invalid: less than MinCount ({low})",
        )
    return low, high


def _user_data(params: Params) -> str | None:
    text = params.get("UserData")
    if text is None:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Ec2Error("InvalidParameterValue", "Invalid BASE64 encoding of user data.") from None
    if len(raw) > MAX_USER_DATA:
        raise Ec2Error("InvalidParameterValue", f"User data is limited to {MAX_USER_DATA} bytes.")
    return str(text)


def _zone(ctx: Ec2Context, params: Params) -> str:
    zone = (params.get("Placement") or {}).get("AvailabilityZone") or ctx.zones[0]
    if zone not in ctx.zones:
        raise Ec2Error("InvalidParameterValue", f"Invalid availability zone: [{zone}]")
    return str(zone)


def _tags(params: Params, resource: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in params.get("TagSpecifications") or []:
        if spec.get("ResourceType") not in ("instance", "volume", "network-interface"):
            raise Ec2Error(
                "InvalidParameterValue",
                f"'{spec.get('ResourceType')}' is not a valid taggable resource type for this"
                " operation.",
            )
        if spec.get("ResourceType") == resource:
            out.update({t["Key"]: t.get("Value", "") for t in spec.get("Tags") or []})
    return out


async def run_instances(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    token = params.get("ClientToken")
    if not token:
        return await _launch(ctx, caller, params, await _own(ctx, caller))
    lock = ctx.launching.setdefault((caller.user_id, token), asyncio.Lock())
    async with lock:
        owned = await _own(ctx, caller)
        earlier = [i for i in owned if i.hints.get(f"{PREFIX}token") == token]
        if earlier:
            _same_launch(earlier, params)
            return await _reservation(ctx, caller, earlier)
        return await _launch(ctx, caller, params, owned)


async def _launch(
    ctx: Ec2Context, caller: Principal, params: Params, owned: list[Instance]
) -> Result:
    low, high = _counts(params)
    if len(owned) + low > MAX_INSTANCES:
        raise Ec2Error(
            "InstanceLimitExceeded",
            f"You have requested more instances ({len(owned) + low}) than your current"
            f" instance limit of {MAX_INSTANCES} allows.",
        )
    high = min(high, MAX_INSTANCES - len(owned))
    kind = ctx.instance_type(params.get("InstanceType"))
    image = await by_id(ctx, caller, params["ImageId"])
    groups = await launch_groups(ctx, caller, params)  # the caller's; default if none named
    key = await launch_key(ctx, caller, params.get("KeyName"))
    launch = Launch(
        reservation=ids.new_reservation(),
        image=params["ImageId"],
        instance_type=kind.name,
        zone=_zone(ctx, params),
        key_name=key.name if key else None,
        public_key=key.public_key if key else None,
        client_token=params.get("ClientToken"),
        user_data=_user_data(params),
        tags=_tags(params, "instance"),
    )
    devices = blockdevices.parse(ctx, params, launch.zone)  # refused before anything is made
    room = await ctx.service.instances.room(caller, kind.cores, kind.memory)
    count = min(high, room)
    if count < low:
        raise Ec2Error(
            "InsufficientInstanceCapacity",
            f"There is not enough capacity for {low} {kind.name} instance(s) now (room for"
            f" {room}); try fewer, a smaller type, or later.",
        )
    names = [launch.reservation] if count == 1 else many_names(launch.reservation, count)
    roots = await _root_disks(ctx, caller, image.name, names)
    requests = [
        VmRequest(
            name=name,
            # The root disk is the instance's own, persistent, in the store: a stopped
            # instance keeps it and starts again on any host (StopInstances).
            disks=[DiskRequest(uri=root, persistent=True)],
            cores=kind.cores,
            memory=kind.memory,
            own_hints={**launch.hints(), **groups},
        )
        for name, root in zip(names, roots, strict=True)
    ]
    group = launch.reservation if count > 1 else None
    try:
        await blockdevices.prepare(ctx, caller, devices, image, roots)
        made = await ctx.service.instances.create_each(
            caller, requests, group, also=devices.hook(ctx.service.volumes)
        )
    except BaseException:
        await asyncio.gather(*(_discard(ctx, root) for root in roots))
        await blockdevices.discard(ctx, devices)
        raise
    return await _reservation(ctx, caller, made)


def root_name(instance_name: str) -> str:
    """The image name of the root disk RunInstances gives the instance named so."""
    return f"{instance_name}-root.qcow2"


async def _root_disks(
    ctx: Ec2Context, caller: Principal, image: str, names: list[str]
) -> list[str]:
    """Each instance's own root disk, a thin clone of the image made at once (in well under
    a millisecond each: ``ImageOps.thin_clone``); all or none."""
    made: list[str] = []
    try:
        for name in names:
            made.append((await ctx.service.images.root_disk(caller, image, root_name(name))).name)
    except BaseException:
        await asyncio.gather(*(_discard(ctx, root) for root in made))
        raise
    return made


async def _discard(ctx: Ec2Context, root: str) -> None:
    try:
        await ctx.service.images.discard_copy(root, "the root disk of an instance not launched")
    except TashiError as exc:
        log.warning("could not remove the root disk %s: %s", root, exc.message)


async def _own(ctx: Ec2Context, caller: Principal) -> list[Instance]:
    """The caller's own instances (an administrator's too: the limit is per user)."""
    return await ctx.service.instances.find(caller, InstanceQuery(user=str(caller.user_id)))


def _same_launch(earlier: list[Instance], params: Params) -> None:
    launch = Launch.of(earlier[0].hints)
    asked = (params.get("ImageId"), params.get("InstanceType") or None)
    had = (launch.image, launch.instance_type) if launch else (None, None)
    if asked[0] != had[0] or (asked[1] is not None and asked[1] != had[1]):
        raise Ec2Error(
            "IdempotentParameterMismatch",
            "The client token you have provided is associated with a resource that is already"
            " deleted or whose parameters differ.",
        )


def _indexed(items: Sequence[Instance]) -> dict[int, int]:
    """AmiLaunchIndex of each instance: its place, by id, among its reservation's."""
    out: dict[int, int] = {}
    seen: dict[str, int] = defaultdict(int)
    for inst in sorted(items, key=lambda i: i.id):
        found = Launch.of(inst.hints)  # one made without RunInstances is alone in its own
        reservation = found.reservation if found else f"r-{inst.id:017x}"
        out[inst.id] = seen[reservation]
        seen[reservation] += 1
    return out


async def _reservation(ctx: Ec2Context, caller: Principal, made: list[Instance]) -> Result:
    index = _indexed(made)
    launch = launch_of(made[0], ctx.defaults)
    return {
        "ReservationId": launch.reservation,
        "OwnerId": ids.account(made[0].user_id),
        "Groups": [],
        "Instances": [render(i, launch_of(i, ctx.defaults), index[i.id], i.state) for i in made],
    }


async def visible(ctx: Ec2Context, caller: Principal) -> list[Instance]:
    return await ctx.service.instances.find(caller, InstanceQuery())


def _values(shown: Mapping[str, Any], reservation: str) -> dict[str, list[str]]:
    tags = {t["Key"]: t["Value"] for t in shown["Tags"]}
    values = {
        "instance-id": [shown["InstanceId"]],
        "instance-state-name": [shown["State"]["Name"]],
        "instance-state-code": [str(shown["State"]["Code"])],
        "image-id": [shown["ImageId"]],
        "instance-type": [shown["InstanceType"]],
        "private-ip-address": [shown.get("PrivateIpAddress") or ""],
        "private-dns-name": [shown["PrivateDnsName"]],
        "reservation-id": [reservation],
        "availability-zone": [shown["Placement"]["AvailabilityZone"]],
        "key-name": [shown.get("KeyName") or ""],
        "client-token": [shown["ClientToken"]],
        "launch-index": [str(shown["AmiLaunchIndex"])],
        "tag-key": list(tags),
        "tag-value": list(tags.values()),
    }
    values.update({f"tag:{k}": [v] for k, v in tags.items()})
    return values


async def describe_instances(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    wanted = [ids.parse_instance(i) for i in params.get("InstanceIds") or []]
    matches = compile_filters(params.get("Filters"), _FILTERS, "DescribeInstances")
    rows = _rows(ctx, caller, await visible(ctx, caller))
    if wanted:
        have = {r.iid for r in rows}
        missing = [ids.instance_id(i) for i in wanted if i not in have]
        if missing:
            raise Ec2Error(
                "InvalidInstanceID.NotFound",
                f"The instance ID{'s' if len(missing) > 1 else ''} '{', '.join(missing)}'"
                f" {'do' if len(missing) > 1 else 'does'} not exist",
            )
        rows = [r for r in rows if r.iid in set(wanted)]
    rows = [r for r in rows if matches(_values(r.shown, r.reservation))]
    if wanted and params.get("MaxResults") is not None:
        raise Ec2Error(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        )
    return page_answer(
        "Reservations",
        rows,
        lambda r: ids.instance_id(r.iid),
        params,
        listing="instances",
        minimum=5,
        maximum=1000,
        render=lambda shown: _reservations(shown),
    )


class Row(NamedTuple):
    iid: int
    reservation: str
    shown: dict[str, Any]
    owner: int


def _rows(ctx: Ec2Context, caller: Principal, items: list[Instance]) -> list[Row]:
    """Every instance the caller may see, the terminated ones kept included, by id."""
    index = _indexed(items)
    rows = []
    for inst in items:
        launch = launch_of(inst, ctx.defaults)
        shown = render(inst, launch, index[inst.id], inst.state)
        rows.append(Row(inst.id, launch.reservation, shown, inst.user_id))
    owner = None if caller.is_trusted else caller.user_id
    live = {r.iid for r in rows}
    for iid, who, reservation, shown in ctx.terminated.of(owner):
        if iid not in live:
            rows.append(Row(iid, reservation, shown, who))
    return sorted(rows, key=lambda r: r.iid)


def _reservations(rows: Iterable[Row]) -> list[dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = grouped.setdefault(
            row.reservation,
            {
                "ReservationId": row.reservation,
                "OwnerId": ids.account(row.owner),
                "Groups": [],
                "Instances": [],
            },
        )
        entry["Instances"].append(row.shown)
    return list(grouped.values())


async def mine(ctx: Ec2Context, caller: Principal, params: Params) -> list[Instance]:
    """The instances ``InstanceIds`` names, all visible to the caller, or NotFound naming the
    ones that are not."""
    wanted = [ids.parse_instance(i) for i in params["InstanceIds"]]
    if not wanted:
        raise Ec2Error("MissingParameter", "The request must contain the parameter InstanceId")
    seen = {i.id: i for i in await visible(ctx, caller)}
    missing = [ids.instance_id(i) for i in wanted if i not in seen]
    if missing:
        raise Ec2Error(
            "InvalidInstanceID.NotFound", f"The instance ID '{', '.join(missing)}' does not exist"
        )
    return [seen[i] for i in dict.fromkeys(wanted)]


async def terminate_instances(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    targets = await mine(ctx, caller, params)
    for inst in targets:
        if launch_of(inst, ctx.defaults).no_terminate:
            raise Ec2Error(
                "OperationNotPermitted",
                f"The instance '{ids.instance_id(inst.id)}' may not be terminated. Modify its"
                " 'disableApiTermination' instance attribute and try again.",
            )
    index = _indexed(targets)

    async def one(inst: Instance) -> dict[str, Any]:
        launch = launch_of(inst, ctx.defaults)
        after = await _destroy(ctx, caller, inst)
        current = InstanceState.Exited if after is None else after.state
        if after is None:
            await _delete_root(ctx, inst)
            ctx.terminated.keep(
                inst.user_id, launch.reservation, render(inst, launch, index[inst.id], inst.state)
            )
        return {
            "InstanceId": ids.instance_id(inst.id),
            "PreviousState": state(inst.state),
            "CurrentState": state(current),
        }

    done = await asyncio.gather(*(one(i) for i in targets), return_exceptions=True)
    failed = [d for d in done if isinstance(d, BaseException)]
    if failed:  # the others are done (or under way); the first failure is the answer
        raise failed[0]
    return {"TerminatingInstances": [d for d in done if not isinstance(d, BaseException)]}


async def _destroy(ctx: Ec2Context, caller: Principal, inst: Instance) -> Instance | None:
    """Destroy ``inst`` (``destroyVm``: read again if it moved meanwhile); ``None`` once it is
    gone."""
    try:
        return await ctx.service.instances.destroy_vm(caller, str(inst.id))
    except NotFound:
        return None


async def _delete_root(ctx: Ec2Context, inst: Instance) -> None:
    """Remove the root disk RunInstances gave a terminated instance (``root_name``, in the
    store): AWS's DeleteOnTermination, on by default."""
    if Launch.of(inst.hints) is None:
        return
    for disk in inst.disks:
        if disk.persistent and disk.uri == root_name(inst.name):
            try:
                await ctx.service.images.discard_copy(
                    disk.uri, "the root disk of a terminated instance"
                )
            except TashiError as exc:
                log.warning("could not remove %s of %s: %s", disk.uri, inst.name, exc.message)


HANDLERS: Mapping[str, Handler] = {
    "RunInstances": run_instances,
    "DescribeInstances": describe_instances,
    "TerminateInstances": terminate_instances,
}
