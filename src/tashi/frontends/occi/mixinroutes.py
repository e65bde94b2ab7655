"""The requests about user mixins (``usermixins.py``): a definition POSTed to the query
interface (200 and the mixin as this server now lists it) or DELETEd from it (the mixin goes,
and its tag leaves every entity that carried it), and the members of such a mixin's collection:
POST of locations associates them, DELETE dissociates them (all, without locations), PUT makes
them exactly the locations given. A compute or a storage carries a user mixin; a network or a
link cannot (409: they have no tags in Tashi).
"""

from __future__ import annotations

from starlette.responses import Response

from tashi.domain.tags import Kind, Target
from tashi.domain.volumes import is_volume_id
from tashi.frontends.occi import categories as c
from tashi.frontends.occi import collections as coll
from tashi.frontends.occi import computes, storages
from tashi.frontends.occi.categories import Category
from tashi.frontends.occi.errors import OcciError, bad
from tashi.frontends.occi.request import Request
from tashi.frontends.occi.usermixins import tag_of


async def define(req: Request) -> Response:
    """POST to the query interface: each mixin of the rendering defined for the caller."""
    if not req.parsed.categories:
        raise bad('POST a mixin\'s definition (Category: term; scheme; class="mixin"; location)')
    model = req.model
    made: list[Category] = []
    for ref in req.parsed.categories:
        made.append(await req.ctx.mixins.define(req.caller, ref, model))
        model = await req.ctx.model(req.caller)
    return req.out.categories(made)


async def remove(req: Request) -> Response:
    """DELETE from the query interface: the caller's mixins named, and their tags."""
    if not req.parsed.categories:
        raise bad("DELETE names the mixin to remove (its Category)")
    snap = await coll.Snapshot.take(req.ctx, req.caller, req.model)
    for ref in req.parsed.categories:
        mixin = req.model.by_id.get(ref.id)
        if mixin is None or mixin.id not in req.model.user:
            raise OcciError(404, f"you defined no mixin {ref.id}")
        targets = [_target(e.location) for e in coll.members(snap, mixin)]
        if targets:
            await req.ctx.service.tags.delete(req.caller, targets, {tag_of(mixin.id): None})
        await req.ctx.mixins.remove(req.caller, ref)
    return req.out.done()


def _target(location: str) -> Target:
    """What a location names, as something Tashi tags (a compute or a volume)."""
    path = location.split("?", 1)[0].rstrip("/")
    ident = path.rsplit("/", 1)[-1]
    if f"{c.COMPUTE.location}{ident}" in path and ident.isdigit():
        return Target(Kind.instance, ident)
    if f"{c.STORAGE.location}{ident}" in path and is_volume_id(ident):
        return Target(Kind.volume, ident)
    raise OcciError(
        409, f"{location} cannot carry a user mixin: a compute or a volume's storage can"
    )


async def members_change(req: Request, mixin: Category) -> Response:
    """POST (add), DELETE (remove; all without locations) or PUT (exactly these) of the
    entities a user mixin's collection holds; the collection as it is then."""
    snap = await coll.Snapshot.take(req.ctx, req.caller, req.model)
    now = {_target(e.location) for e in coll.members(snap, mixin)}
    asked = [_target(loc) for loc in req.parsed.locations]
    if req.method == "POST" and not asked:
        raise bad("associate entities by their locations (X-OCCI-Location)")
    for target in asked:  # each must be the caller's to see (404 otherwise)
        if target.kind is Kind.instance:
            await computes.get(req.ctx, req.caller, target.ref)
        else:
            await storages.get(req.ctx, req.caller, target.ref)
    for target in asked:
        if mixin.applies and _kind(target).id not in mixin.applies:
            raise bad(f"{mixin.id} does not apply to {_kind(target).term}")
    key = tag_of(mixin.id)
    if req.method == "DELETE":
        gone = [t for t in (asked or list(now)) if t in now]
        add: list[Target] = []
    elif req.method == "PUT":
        gone = [t for t in now if t not in asked]
        add = [t for t in asked if t not in now]
    else:
        gone, add = [], [t for t in asked if t not in now]
    if gone:
        await req.ctx.service.tags.delete(req.caller, gone, {key: None})
    if add:
        await req.ctx.service.tags.create(req.caller, add, {key: ""})
    snap = await coll.Snapshot.take(req.ctx, req.caller, req.model)
    return req.out.collection(coll.members(snap, mixin))


def _kind(target: Target) -> Category:
    return c.COMPUTE if target.kind is Kind.instance else c.STORAGE
