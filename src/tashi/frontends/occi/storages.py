"""The ``storage`` kind on Tashi's volumes (the EC2 front-end's EBS volumes,
``clustermanager/volumes``) and the ``storagelink`` kind on attaching them.

| OCCI                                   | Tashi                                              |
|----------------------------------------|----------------------------------------------------|
| POST /storage/ (size, title)           | a volume of ``ceil(occi.storage.size)`` GiB        |
| DELETE /storage/<vol>                  | the volume deleted; 409 while attached             |
| storage action snapshot, backup        | a snapshot of the volume (EC2's CreateSnapshot)    |
| storage action online                  | nothing (a volume that exists is online)           |
| storage action offline, resize         | 501: Tashi does neither                            |
| POST /link/storagelink/                | the volume attached (hot-plugged into a running VM)|
| DELETE /link/storagelink/<i>-<vol>     | the volume detached (hot-unplugged)                |
| a compute created with a storagelink   | the volume attached once the compute runs          |

A link to a compute that is not running, paused or stopped yet (one just created) is kept on
the compute (``entities.PENDING``) and attached when it gets there (``attach_pending``, called
on each ``InstanceStateChanged``); one that cannot be attached then shows ``error`` with why.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping

from tashi.clustermanager.events import InstanceStateChanged
from tashi.clustermanager.volumes.attachments import COLD, HOT
from tashi.clustermanager.volumes.service import Listed, NewVolume
from tashi.domain import volumes as rules
from tashi.domain.errors import InvalidInput, InvalidState, NotFound, TashiError
from tashi.domain.ids import InstanceId, UserId
from tashi.domain.models import Instance, Principal, Role
from tashi.domain.states import InstanceState
from tashi.domain.tags import Kind, Target
from tashi.domain.volumes import VolumeState
from tashi.frontends.occi import categories as c
from tashi.frontends.occi import computes
from tashi.frontends.occi import entities as ent
from tashi.frontends.occi.context import OcciContext
from tashi.frontends.occi.entities import Entity
from tashi.frontends.occi.errors import OcciError, bad, not_implemented
from tashi.frontends.occi.model import Model
from tashi.frontends.occi.parsed import Parsed, Value
from tashi.frontends.occi.usermixins import tag_of

log = logging.getLogger(__name__)

#: who attaches the links a compute was created with, once it runs
SYSTEM = Principal(UserId(0), "tashi-occi", Role.admin)
V = VolumeState
#: the storage attributes a client may set; the rest are Tashi's
SETTABLE = ("occi.core.title", "occi.core.summary")


async def listed(ctx: OcciContext, caller: Principal) -> list[Listed]:
    """The caller's volumes (an admin's: all): available ones first, the newest first."""
    found = await ctx.service.volumes.describe(caller)
    return sorted(
        found, key=lambda v: (v.volume.state is not V.available, -v.volume.created_at.timestamp())
    )


async def get(ctx: OcciContext, caller: Principal, volume_id: str) -> Listed:
    for one in await ctx.service.volumes.describe(caller):
        if one.volume.id == volume_id:
            return one
    raise NotFound(f"no storage {volume_id}")


def _text(attrs: Mapping[str, Value], name: str) -> str:
    val = attrs[name]
    if not isinstance(val, str) or not 0 < len(val) <= 255 or not val.isprintable():
        raise bad(f"{name} of a storage is a string of 1 to 255 printable characters")
    return val


def _mixin_tags(parsed: Parsed, model: Model, kind: c.Category) -> dict[str, str]:
    """The tags of the user mixins a rendering names (400 for any other mixin)."""
    tags: dict[str, str] = {}
    for m in parsed.resolved(model).mixins:
        if m.id not in model.user or (m.applies and kind.id not in m.applies):
            raise bad(f"the mixin {m.id} does not apply to {kind.term}")
        tags[tag_of(m.id)] = ""
    return tags


async def create(ctx: OcciContext, caller: Principal, model: Model, parsed: Parsed) -> Listed:
    """A new volume from a storage rendering: ``occi.storage.size`` GiB (rounded up)."""
    if parsed.resolved(model).kind is not c.STORAGE:
        raise bad(f"POST /storage/ creates a storage: its rendering names the kind {c.STORAGE.id}")
    attrs = parsed.attributes
    size = attrs.get("occi.storage.size")
    if isinstance(size, bool) or not isinstance(size, int | float) or not math.isfinite(size):
        raise bad("occi.storage.size (GiB, a number) is required")
    gib = math.ceil(size)
    if not rules.MIN_SIZE <= gib <= rules.MAX_SIZE or size <= 0:
        raise bad(f"occi.storage.size is above 0 and at most {rules.MAX_SIZE} GiB")
    for name in attrs:
        if name not in (*SETTABLE, "occi.storage.size", "occi.core.id"):
            raise OcciError(409, f"{name} of a storage is Tashi's to set")
    tags = _mixin_tags(parsed, model, c.STORAGE)
    if "occi.core.title" in attrs:
        tags[ent.TITLE_TAG] = _text(attrs, "occi.core.title")
    if "occi.core.summary" in attrs:
        tags[ent.SUMMARY_TAG] = _text(attrs, "occi.core.summary")
    return await ctx.service.volumes.create(caller, NewVolume(size=gib, zone=ctx.zone), tags)


async def update(
    ctx: OcciContext, caller: Principal, model: Model, one: Listed, parsed: Parsed
) -> Listed:
    """Title and summary change (they are the volume's tags); its size does not (409)."""
    r = parsed.resolved(model)
    if r.kind is not None and r.kind is not c.STORAGE:
        raise bad(f"/storage/{one.volume.id} is a storage, not a {r.kind.term}")
    tags = _mixin_tags(parsed, model, c.STORAGE)
    now = {**one.tags}
    for name, val in parsed.attributes.items():
        if name == "occi.core.title":
            tags[ent.TITLE_TAG] = _text(parsed.attributes, name)
        elif name == "occi.core.summary":
            tags[ent.SUMMARY_TAG] = _text(parsed.attributes, name)
        elif name == "occi.storage.size" and val != one.volume.size:
            raise OcciError(409, "Tashi does not resize a volume")
        elif name not in ("occi.core.id", "occi.storage.size", *_moving()):
            raise OcciError(409, f"{name} of a storage is Tashi's to set")
    tags = {k: v for k, v in tags.items() if now.get(k) != v}
    if tags:
        await ctx.service.tags.create(caller, [Target(Kind.volume, one.volume.id)], tags)
    return await get(ctx, caller, one.volume.id)


def _moving() -> tuple[str, ...]:
    return ("occi.storage.state", "occi.storage.state.message")


async def delete(ctx: OcciContext, caller: Principal, volume_id: str) -> None:
    """The volume and its file; 409 (``VolumeInUse``) while it is attached."""
    await get(ctx, caller, volume_id)
    await ctx.service.volumes.delete(caller, volume_id)


async def act(
    ctx: OcciContext, caller: Principal, one: Listed, action: c.Category, attrs: Mapping[str, Value]
) -> Listed:
    """A storage action (GFD.224 §3.3 table 8) on a volume."""
    vid = one.volume.id
    if action in (c.STORAGE_SNAPSHOT, c.STORAGE_BACKUP):
        await ctx.service.volumes.create_snapshot(caller, vid, f"OCCI {action.term} of {vid}")
        return one
    if action is c.STORAGE_ONLINE:
        if one.volume.state in (V.creating, V.deleting, V.error):
            raise OcciError(409, f"storage {vid} is {one.volume.state.value}")
        return one
    if action is c.STORAGE_OFFLINE:
        raise not_implemented(
            "a Tashi volume is online while it exists: DELETE its storagelink to detach it"
        )
    raise not_implemented("Tashi does not resize a volume: create a larger storage")


# --- storagelinks ---------------------------------------------------------------------------


def link_end(
    value: Value | None, kind: c.Category, what: str, link: c.Category = c.STORAGELINK
) -> str:
    """The id at the end of a ``link``'s ``source`` or ``target`` (a location, absolute or
    not), which must be a ``kind``."""
    text = str(value or "")
    ident = text.rstrip("/").rsplit("/", 1)[-1]
    if not ident or str(kind.location) not in text:
        raise bad(f"a {link.term}'s {what} is a {kind.term} ({kind.location}<id>), not {text!r}")
    return ident


def _device(inst: Instance, asked: Value | None) -> str:
    """The device the volume takes: the one asked (``/dev/vd[b-z]``) or the first free."""
    devices = [*(d.device for d in inst.disks if d.device), *ent.pending(inst).values()]
    taken = {i for i in map(_index, devices) if i is not None}
    if asked is not None:
        if not isinstance(asked, str):
            raise bad("occi.storagelink.deviceid is a device name: /dev/vd[b-z]")
        rules.free_index(taken, asked)
        return asked
    free = next((i for i in range(1, 26) if i not in taken), None)
    if free is None:
        raise OcciError(409, f"compute {inst.id} has no free device left")
    return f"/dev/vd{chr(ord('a') + free)}"


def _index(device: str) -> int | None:
    """The attachment point of a device name (``None``: the root disk's or another name)."""
    try:
        return rules.device_index(device)
    except InvalidInput:
        return None


async def link(ctx: OcciContext, caller: Principal, model: Model, parsed: Parsed) -> Entity:
    """A storagelink made on its own: the volume attached to the compute."""
    if parsed.resolved(model).kind is not c.STORAGELINK:
        raise bad(f"POST {c.STORAGELINK.location} names the kind {c.STORAGELINK.id}")
    attrs = parsed.attributes
    iid = link_end(attrs.get("occi.core.source"), c.COMPUTE, "source")
    vid = link_end(attrs.get("occi.core.target"), c.STORAGE, "target")
    inst = await computes.get(ctx, caller, iid)
    one = await get(ctx, caller, vid)
    if one.volume.attachment is not None and one.volume.attachment.instance_id == inst.id:
        raise OcciError(409, f"storage {vid} is linked to compute {inst.id} already")
    device = _device(inst, attrs.get("occi.storagelink.deviceid"))
    mount = attrs.get("occi.storagelink.mountpoint")
    own: dict[str, str | None] = {}
    if mount is not None:
        own[ent.MOUNT + vid] = _text(attrs, "occi.storagelink.mountpoint")
    if inst.state in HOT | COLD:
        await ctx.service.volumes.attach(caller, vid, inst.id, device)
    else:  # not placed yet: attached once it runs
        if one.volume.state is not V.available or one.volume.user_id != inst.user_id:
            raise OcciError(409, f"storage {vid} is {one.volume.state.value}, not available")
        own[ent.PENDING] = " ".join(
            f"{v}={d}" for v, d in {**ent.pending(inst), vid: device}.items()
        )
    if own:
        await ctx.service.attributes.modify(caller, str(inst.id), own=own)
    inst = await computes.get(ctx, caller, iid)
    return find_link(inst, vid)


def find_link(inst: Instance, volume_id: str) -> Entity:
    for one in ent.compute_links(inst):
        if one.id == ent.link_id(inst.id, volume_id):
            return one
    raise NotFound(f"no storagelink {ent.link_id(inst.id, volume_id)}")


async def unlink(ctx: OcciContext, caller: Principal, inst: Instance, volume_id: str) -> None:
    """The link goes: a waiting one is forgotten, an attached volume detached."""
    find_link(inst, volume_id)
    waits, failed = ent.pending(inst), ent.failed(inst)
    own: dict[str, str | None] = {ent.MOUNT + volume_id: None}
    if volume_id in waits or volume_id in failed:
        waits.pop(volume_id, None)
        failed.pop(volume_id, None)
        own[ent.PENDING] = _joined(waits)
        own[ent.FAILED] = json.dumps(failed) if failed else None
    else:
        await ctx.service.volumes.detach(caller, volume_id, instance_id=inst.id)
    await ctx.service.attributes.modify(caller, str(inst.id), own=own)


def _joined(waits: Mapping[str, str]) -> str | None:
    return " ".join(f"{v}={d}" for v, d in waits.items()) or None


async def pending_for_create(ctx: OcciContext, caller: Principal, targets: list[str]) -> str | None:
    """The ``PENDING`` hint of a new compute linked to the storages ``targets`` (their
    locations): each the caller's own and available; devices from ``/dev/vdb``."""
    waits: dict[str, str] = {}
    for target in targets:
        vid = link_end(target, c.STORAGE, "target")
        one = await get(ctx, caller, vid)
        if one.volume.state is not V.available or one.volume.user_id != caller.user_id:
            raise OcciError(
                409,
                f"storage {vid} is {one.volume.state.value}: a new compute takes an"
                " available storage of its own user",
            )
        waits[vid] = f"/dev/vd{chr(ord('b') + len(waits))}"
    if len(waits) > rules.MAX_ATTACHED:
        raise bad(f"a compute takes at most {rules.MAX_ATTACHED} storages")
    return _joined(waits)


async def attach_pending(ctx: OcciContext, iid: InstanceId) -> None:
    """Attach the volumes compute ``iid`` was created with, now that it runs (or is stopped)."""
    inst = await ctx.service.instances.get(SYSTEM, str(iid))
    waits = ent.pending(inst)
    if not waits or inst.state not in HOT | COLD:
        return
    failed = ent.failed(inst)
    for vid, device in waits.items():
        try:
            await ctx.service.volumes.attach(SYSTEM, vid, inst.id, device)
        except TashiError as exc:
            log.warning("compute %s: its storage %s is not attached: %s", iid, vid, exc.message)
            failed[vid] = exc.message
    own = {ent.PENDING: None, ent.FAILED: json.dumps(failed) if failed else None}
    try:
        await ctx.service.attributes.modify(SYSTEM, str(iid), own=own)
    except (NotFound, InvalidState) as exc:
        log.info("compute %s changed meanwhile: %s", iid, exc.message)


def watch(ctx: OcciContext) -> None:
    """Attach a new compute's storages when it runs: ``attach_pending`` on each change of an
    instance with ``PENDING`` to running, paused or stopped (one at a time per compute)."""
    when_ready(ctx, ent.PENDING, HOT | COLD, attach_pending)


def when_ready(
    ctx: OcciContext,
    hint: str,
    states: frozenset[InstanceState],
    act: Callable[[OcciContext, InstanceId], Awaitable[None]],
) -> None:
    """``act`` on each change of an instance with own hint ``hint`` to one of ``states`` (what
    a compute waits for, done once it can take it), one run at a time per compute."""
    busy: set[InstanceId] = set()

    async def run(iid: InstanceId) -> None:
        try:
            await act(ctx, iid)
        finally:
            busy.discard(iid)

    async def changed(event: InstanceStateChanged) -> None:
        inst = event.instance
        if inst is None or event.current not in states or hint not in inst.hints:
            return
        if inst.id not in busy:
            busy.add(inst.id)
            ctx.work.spawn(run(inst.id))

    ctx.service.events.subscribe(InstanceStateChanged, changed)


async def relink(
    ctx: OcciContext, caller: Principal, inst: Instance, volume_id: str, parsed: Parsed
) -> Instance:
    """An update of a storagelink: its mountpoint (kept for the client); the rest is 409."""
    now = find_link(inst, volume_id).attributes
    mount: str | None = None
    for name, val in parsed.attributes.items():
        if name == "occi.storagelink.mountpoint":
            mount = _text(parsed.attributes, name)
        elif now.get(name) != val and not name.startswith("occi.storagelink.state"):
            raise OcciError(409, f"{name} of a storagelink does not change in Tashi")
    if mount is None:
        return inst
    return await ctx.service.attributes.modify(
        caller, str(inst.id), own={ent.MOUNT + volume_id: mount}
    )
