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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tashi.clustermanager.instances.specs import many_names
from tashi.domain.errors import NotFound, TashiError
from tashi.domain.instancetypes import InstanceType
from tashi.domain.keypairs import KeyPair
from tashi.domain.launches import PREFIX, Launch
from tashi.domain.models import Image, Instance, Principal
from tashi.domain.operations import DiskRequest, InstanceQuery, VmRequest
from tashi.domain.states import InstanceState
from tashi.domain.volumes import Volume
from tashi.frontends.ec2 import ids, protocol
from tashi.frontends.ec2.actions import blockdevices
from tashi.frontends.ec2.actions.discovery import ACCOUNT
from tashi.frontends.ec2.actions.images import by_id
from tashi.frontends.ec2.actions.keypairs import launch_key
from tashi.frontends.ec2.actions.secgroups import launch_groups
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page
from tashi.frontends.ec2.instanceviews import (
    FILTER_VALUES,
    FilterValues,
    Shown,
    launch_of,
    render,
    shown,
    state,
    states_named,
    volume_ids,
)
from tashi.frontends.ec2.protocol import Written

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_USER_DATA = 16384  # bytes, decoded, as AWS
MAX_INSTANCES = int(ACCOUNT["max-instances"][0])  # per user, as DescribeAccountAttributes says
_FILTERS = (*FILTER_VALUES, "tag:")


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
        looked = await _look_up(ctx, caller, params)
        return await _launch(ctx, caller, params, ids.new_reservation(), looked)
    reservation = ids.token_reservation(caller.user_id, token)
    lock = ctx.launching.setdefault((caller.user_id, token), asyncio.Lock())
    async with lock:
        # boto3 sends a token with every RunInstances: the read of an earlier launch of it
        # goes at once with the launch's own look-ups, which a retry then leaves unused
        earlier, looked = await asyncio.gather(
            _launched(ctx, caller, reservation, token), _look_up(ctx, caller, params)
        )
        if earlier:
            _same_launch([s.inst for s in earlier], params)
            return await _reservation(ctx, caller, earlier)
        return await _launch(ctx, caller, params, reservation, looked)


@dataclass(frozen=True, slots=True)
class _Looked:
    """What a launch reads before it makes anything, each its value or its failure: the
    caller's instance count, the image, the security groups' hint, the key pair, and the
    instance type with the room for it."""

    owned: int | BaseException
    image: Image | BaseException
    groups: dict[str, str] | BaseException
    key: KeyPair | BaseException | None
    room: tuple[InstanceType, int] | BaseException


async def _look_up(ctx: Ec2Context, caller: Principal, params: Params) -> _Looked:
    """Each look-up is a store read (or the image store's listing) in a thread of its own:
    taken at once, not one after another on the launch's path. Never raises: ``_launch`` tells
    the failures in the order it checks them, whichever came first."""

    async def room() -> tuple[InstanceType, int]:
        kind = ctx.instance_type(params.get("InstanceType"))
        return kind, await ctx.service.instances.room(caller, kind.cores, kind.memory)

    owned, image, groups, key, free = await asyncio.gather(
        ctx.service.instances.count(caller, InstanceQuery(user=str(caller.user_id))),
        by_id(ctx, caller, params["ImageId"]),
        launch_groups(ctx, caller, params),  # the caller's; default if none named
        launch_key(ctx, caller, params.get("KeyName")),
        room(),
        return_exceptions=True,
    )
    return _Looked(owned, image, groups, key, free)


async def _launched(
    ctx: Ec2Context, caller: Principal, reservation: str, token: str
) -> list[Shown]:
    """The instances of the caller's launch ``reservation`` with ``token``, those terminated
    within the hour included (a retry answers them, as AWS does): by their names (an indexed
    query: RunInstances names its instances after their reservation), not by a listing of all
    the caller's instances."""
    query = InstanceQuery(user=str(caller.user_id), name_prefix=reservation)
    found = await ctx.service.instances.find(caller, query)
    live = shown([i for i in found if i.hints.get(f"{PREFIX}token") == token], ctx.defaults)
    gone = [
        s
        for s in ctx.terminated.of(caller.user_id)
        if s.launch.reservation == reservation and s.launch.client_token == token
    ]
    return sorted(live + gone, key=lambda s: s.inst.id)


async def _launch(
    ctx: Ec2Context, caller: Principal, params: Params, reservation: str, looked: _Looked
) -> Result:
    low, high = _counts(params)
    owned = _got(looked.owned)
    if owned + low > MAX_INSTANCES:
        raise Ec2Error(
            "InstanceLimitExceeded",
            f"You have requested more instances ({owned + low}) than your current"
            f" instance limit of {MAX_INSTANCES} allows.",
        )
    high = min(high, MAX_INSTANCES - owned)
    kind, room = _got(looked.room)
    image, groups, key = _got(looked.image), _got(looked.groups), _got(looked.key)
    launch = Launch(
        reservation=reservation,
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
    return await _reservation(ctx, caller, shown(made, ctx.defaults))


def _got(result: T | BaseException) -> T:
    """A result of ``asyncio.gather(..., return_exceptions=True)``, or its failure raised."""
    if isinstance(result, BaseException):
        raise result
    return result


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


async def _reservation(ctx: Ec2Context, caller: Principal, made: list[Shown]) -> Result:
    attached = await _volumes(ctx, caller, made)
    first = made[0]
    return {
        "ReservationId": first.launch.reservation,
        "OwnerId": ids.account(first.inst.user_id),
        "Groups": [],
        "Instances": [_render(s, _attached(s, attached)) for s in made],
    }


async def visible(ctx: Ec2Context, caller: Principal) -> list[Instance]:
    return await ctx.service.instances.find(caller, InstanceQuery())


async def describe_instances(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    """Filters and pages are chosen on the records (``FilterValues``); only the page is
    written, each instance as the cache (``ctx.written``) kept it if it did not change."""
    wanted = [ids.parse_instance(i) for i in params.get("InstanceIds") or []]
    matches = compile_filters(params.get("Filters"), _FILTERS, "DescribeInstances")
    # the store chooses the instances named, or else the states, when it can (not both: one
    # named that a filter leaves out is not missing)
    if wanted:
        query = InstanceQuery(ids=tuple(dict.fromkeys(wanted)))
    else:
        query = InstanceQuery(states=states_named(params.get("Filters")))
    rows = _rows(ctx, caller, await ctx.service.instances.find(caller, query))
    if wanted:
        have = {r.inst.id for r in rows}
        missing = [ids.instance_id(i) for i in wanted if i not in have]
        if missing:
            raise Ec2Error(
                "InvalidInstanceID.NotFound",
                f"The instance ID{'s' if len(missing) > 1 else ''} '{', '.join(missing)}'"
                f" {'do' if len(missing) > 1 else 'does'} not exist",
            )
        chosen = set(wanted)
        rows = [r for r in rows if r.inst.id in chosen]
    if params.get("Filters"):
        rows = [r for r in rows if matches(FilterValues(r))]
    if wanted and params.get("MaxResults") is not None:
        raise Ec2Error(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        )
    page_of, token = page(
        rows,
        lambda r: ids.instance_id(r.inst.id),
        params.get("MaxResults"),
        params.get("NextToken"),
        listing="instances",
    )
    attached = await _volumes(ctx, caller, page_of)
    answer: dict[str, Any] = {"Reservations": _reservations(ctx, page_of, attached)}
    if token:
        answer["NextToken"] = token
    return answer


def _rows(ctx: Ec2Context, caller: Principal, items: list[Instance]) -> list[Shown]:
    """Every instance the caller may see, the terminated ones kept included, by id."""
    rows = shown(items, ctx.defaults, ctx.written.launch)
    owner = None if caller.is_trusted else caller.user_id
    live = {i.id for i in items}
    rows += [s for s in ctx.terminated.of(owner) if s.inst.id not in live]
    return sorted(rows, key=lambda r: r.inst.id)


async def _volumes(ctx: Ec2Context, caller: Principal, rows: list[Shown]) -> dict[str, Volume]:
    """The records of the volumes attached to ``rows``' instances, by id (none read when no
    instance has one)."""
    if not any(volume_ids(r.inst) for r in rows if r.state is not InstanceState.Exited):
        return {}
    return {v.volume.id: v.volume for v in await ctx.service.volumes.describe(caller)}


def _attached(row: Shown, volumes: Mapping[str, Volume]) -> list[Volume]:
    if row.state is InstanceState.Exited:
        return []
    return [volumes[v] for v in volume_ids(row.inst) if v in volumes]


def _render(row: Shown, volumes: Sequence[Volume]) -> Written:
    shown_as = render(row.inst, row.launch, row.launch_index, row.state, {v.id: v for v in volumes})
    return protocol.write("Instance", shown_as)


def _reservations(
    ctx: Ec2Context, rows: Iterable[Shown], volumes: Mapping[str, Volume]
) -> list[Written]:
    """The rows' reservations, in the order of their first instance, each as the cache
    (``ctx.written``) kept it while its instances' XML is the same."""
    grouped: dict[str, tuple[int, list[Written]]] = {}
    for row in rows:
        entry = grouped.get(row.launch.reservation)
        if entry is None:
            entry = grouped[row.launch.reservation] = (row.inst.user_id, [])
        entry[1].append(ctx.written.written(row, _attached(row, volumes), _render))
    owners: dict[int, str] = {}
    out = []
    for reservation, (user_id, instances) in grouped.items():
        owner = owners.get(user_id)
        if owner is None:
            owner = owners[user_id] = ids.account(user_id)
        out.append(ctx.written.reservation(reservation, owner, instances, _write_reservation))
    return out


def _write_reservation(reservation: str, owner: str, instances: Sequence[Written]) -> Written:
    entry = {"ReservationId": reservation, "OwnerId": owner, "Groups": [], "Instances": instances}
    return protocol.write("Reservation", entry)


async def mine(ctx: Ec2Context, caller: Principal, params: Params) -> list[Instance]:
    """The instances ``InstanceIds`` names, all visible to the caller, or NotFound naming the
    ones that are not."""
    wanted = [ids.parse_instance(i) for i in params["InstanceIds"]]
    if not wanted:
        raise Ec2Error("MissingParameter", "The request must contain the parameter InstanceId")
    query = InstanceQuery(ids=tuple(dict.fromkeys(wanted)))
    seen = {i.id: i for i in await ctx.service.instances.find(caller, query)}
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
    rows = {s.inst.id: s for s in shown(targets, ctx.defaults)}

    async def one(inst: Instance) -> dict[str, Any]:
        after = await _destroy(ctx, caller, inst)
        current = InstanceState.Exited if after is None else after.state
        if after is None:
            await _delete_root(ctx, inst)
            ctx.terminated.keep(inst, rows[inst.id].launch, rows[inst.id].launch_index)
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
