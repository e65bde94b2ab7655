"""Where each request goes (GFD.223 §8-11): the query interface, a kind's or mixin's
collection, one entity; each answers the methods GFD.223 defines for it and 405 (with
``Allow``) for the others.

Path (GET; POST; PUT; DELETE):

* ``/-/``, ``/.well-known/org/ogf/occi/-/``: the model; define a user mixin; -; remove one
* ``/compute/``: list; create or ``?action=``; -; delete the caller's own
* ``/compute/<id>``: read; partial update or ``?action=``; update; delete
* ``/network/``, ``/network/<id>``: list, read; create (admin); -; delete (admin)
* ``/storage/``: list; create a volume; -; delete the caller's own free ones
* ``/storage/<vol-id>``: read; update or ``?action=``; update; delete (409 while attached)
* ``/storage/<instance>-<n>`` (a compute's own disk): read; 501 (it follows its compute)
* ``/link/storagelink/``: list; attach a volume; -; -
* ``/link/storagelink/<instance>-<vol-id>``: read; mountpoint; mountpoint; detach
* ``/link/networkinterface/``: list; add a NIC to a compute (hot-plugged); -; -
* ``/link/networkinterface/<instance>-<n>``: read; 501; 501; remove the NIC (its last), or
  forget one waiting to be added
* ``/mixin/…/`` (a mixin's collection): list; associate; replace (user mixins); dissociate
* ``/resource/``, ``/link/``, ``/``: list
"""

from __future__ import annotations

import itertools
import re

from starlette.responses import Response

from tashi.domain.errors import NotFound
from tashi.domain.validation import MAX_NAME
from tashi.domain.volumes import is_volume_id
from tashi.frontends.occi import categories as c
from tashi.frontends.occi import collections as coll
from tashi.frontends.occi import computes, nics, storages
from tashi.frontends.occi import entities as ent
from tashi.frontends.occi import mixinroutes as mixins
from tashi.frontends.occi import storageviews as sv
from tashi.frontends.occi.categories import Category
from tashi.frontends.occi.errors import OcciError, bad, not_implemented
from tashi.frontends.occi.parsed import CategoryRef, Parsed
from tashi.frontends.occi.request import Request

__all__ = ["Request", "route"]

QUERY = ("/-/", "/.well-known/org/ogf/occi/-/")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9.-]+")


async def route(req: Request) -> Response:
    path = req.path
    if path in QUERY or path + "/" in QUERY:
        return await query_interface(req)
    if path == "/":
        return await listing(req, None)
    found = req.model.at(path)
    if found is not None:
        if found.cls == "mixin":
            return await mixin_collection(req, found)
        return await kind_collection(req, found)
    head, _, ident = path.rpartition("/")
    kind = req.model.at(head + "/")
    if kind is None or kind.cls != "kind" or not ident:
        raise NotFound(f"nothing at {path} (GET /-/ lists the collections)")
    return await entity(req, kind, ident)


async def query_interface(req: Request) -> Response:
    if req.method == "POST":
        return await mixins.define(req)
    if req.method == "DELETE":
        return await mixins.remove(req)
    req.allow("GET")
    wanted = coll.query_filters(req.pairs, req.parsed)
    cats = req.model.all
    for ref in wanted.categories:
        cat = req.model.by_id.get(ref.id)
        if cat is None:
            raise bad(f"unknown category {ref.id} in the filter")
        cats = tuple(x for x in req.model.related(cat) if x in cats)
    return req.out.categories(cats)


async def listing(req: Request, cat: Category | None) -> Response:
    req.allow("GET")
    snap = await coll.Snapshot.take(req.ctx, req.caller, req.model)
    items = snap.all() if cat is None else coll.members(snap, cat)
    items = coll.matching(items, req.model, coll.query_filters(req.pairs, req.parsed))
    return req.out.collection(coll.page(items, req.params))


async def kind_collection(req: Request, kind: Category) -> Response:
    if req.method == "GET":
        return await listing(req, kind)
    if kind is c.COMPUTE:
        return await compute_collection(req)
    if kind is c.NETWORK and req.method == "POST" and "action" not in req.params:
        return req.out.created(await _create_network(req))
    if kind is c.STORAGE and req.method in ("POST", "DELETE"):
        return await storage_collection(req)
    if kind is c.STORAGELINK and req.method == "POST" and "action" not in req.params:
        return req.out.created(await storages.link(req.ctx, req.caller, req.model, req.parsed))
    if kind is c.NETWORKINTERFACE and req.method == "POST" and "action" not in req.params:
        return req.out.created(await nics.link(req.ctx, req.caller, req.model, req.parsed))
    if kind in (c.RESOURCE, c.LINK):
        raise OcciError(
            405, "create a compute, network or storage at its kind's collection", ("GET",)
        )
    raise OcciError(405, f"{req.method} is not allowed on {req.path}", ("GET", "POST"))


async def compute_collection(req: Request) -> Response:
    req.allow("GET", "POST", "DELETE")
    ctx, caller = req.ctx, req.caller
    if req.method == "DELETE":
        for inst in await computes.visible(ctx, caller, own=True):
            await computes.delete(ctx, caller, inst)
        return req.out.done()
    if "action" in req.params:
        action = _action(req, c.COMPUTE)
        done = [
            await computes.act(ctx, caller, i, action, req.parsed.attributes)
            for i in await computes.visible(ctx, caller, own=True)
        ]
        return req.out.collection([ent.compute(i, req.model) for i in done])
    waits = await storages.pending_for_create(ctx, caller, computes.storage_targets(req.parsed))
    inst = await computes.create(ctx, caller, req.model, req.parsed, waits=waits)
    return req.out.created(ent.compute(inst, req.model))


async def storage_collection(req: Request) -> Response:
    """POST: a new volume; DELETE: the caller's own volumes that are not attached (409 naming
    those that are, which stay)."""
    ctx, caller, model = req.ctx, req.caller, req.model
    if req.method == "POST":
        if "action" in req.params:
            raise bad("trigger a storage action on one storage: /storage/<id>?action=<term>")
        made = await storages.create(ctx, caller, model, req.parsed)
        return req.out.created(sv.storage(made.volume, made.tags, model))
    own = [v for v in await storages.listed(ctx, caller) if v.volume.user_id == caller.user_id]
    kept = [v.volume.id for v in own if v.volume.attachment is not None]
    for one in own:
        if one.volume.attachment is None:
            await storages.delete(ctx, caller, one.volume.id)
    if kept:
        raise OcciError(409, f"attached, so not deleted: {', '.join(kept)}")
    return req.out.done()


def _action(req: Request, kind: Category) -> Category:
    """The action of ``?action=<term>``, checked against the invocation's rendering."""
    term = req.params["action"]
    mine = [a for a in req.model.actions if a.id in kind.actions and a.term == term]
    if not mine:
        raise bad(f"{kind.term} has no action {term!r}: {', '.join(kind.actions)}")
    named = req.parsed.resolved(req.model).action
    if named is not None and named is not mine[0]:
        raise bad(f"?action={term} but the rendering invokes {named.id}")
    return mine[0]


async def entity(req: Request, kind: Category, ident: str) -> Response:
    if kind is c.COMPUTE:
        return await compute_entity(req, ident)
    if kind is c.NETWORK:
        return await network_entity(req, ident)
    if kind is c.STORAGE and is_volume_id(ident):
        return await storage_entity(req, ident)
    if kind is c.STORAGELINK and is_volume_id(ident.partition("-")[2]):
        return await storagelink_entity(req, ident)
    if kind is c.NETWORKINTERFACE and req.method == "DELETE":
        return await networkinterface_delete(req, ident)
    if kind in (c.STORAGE, c.NETWORKINTERFACE, c.STORAGELINK):
        req.allow("GET", "POST", "PUT", "DELETE")
        found = await _part(req, kind, ident)
        if req.method != "GET":
            raise not_implemented(f"a {kind.term} changes only with its compute in Tashi")
        return req.out.entity(found)
    raise NotFound(f"nothing at {req.path}")


async def _part(req: Request, kind: Category, ident: str) -> ent.Entity:
    iid, dash, index = ident.partition("-")
    if not (dash and iid.isdigit() and index.isdigit()):
        raise NotFound(f"no {kind.term} {ident}")
    inst = await computes.get(req.ctx, req.caller, iid)
    n = int(index)
    if kind is c.STORAGE and n < len(inst.disks):
        images = {i.name: i for i in await req.ctx.service.images.list(req.caller)}
        return ent.storage(inst, n, images)
    if kind is c.STORAGELINK and n < len(inst.disks):
        return ent.storagelink(inst, n)
    if kind is c.NETWORKINTERFACE:
        return nics.find(inst, ident)
    raise NotFound(f"no {kind.term} {ident}")


async def storage_entity(req: Request, ident: str) -> Response:
    req.allow("GET", "POST", "PUT", "DELETE")
    ctx, caller, model = req.ctx, req.caller, req.model
    one = await storages.get(ctx, caller, ident)
    if req.method == "DELETE":
        await storages.delete(ctx, caller, ident)
        return req.out.done()
    if req.method == "POST" and "action" in req.params:
        action = _action(req, c.STORAGE)
        one = await storages.act(ctx, caller, one, action, req.parsed.attributes)
    elif req.method in ("POST", "PUT"):
        if req.parsed.empty:
            raise bad(f"{req.method} of a storage needs its (partial) rendering")
        one = await storages.update(ctx, caller, model, one, req.parsed)
    return req.out.entity(sv.storage(one.volume, one.tags, model))


async def storagelink_entity(req: Request, ident: str) -> Response:
    req.allow("GET", "POST", "PUT", "DELETE")
    iid, _, vid = ident.partition("-")
    inst = await computes.get(req.ctx, req.caller, iid)
    found = storages.find_link(inst, vid)
    if req.method == "DELETE":
        await storages.unlink(req.ctx, req.caller, inst, vid)
        return req.out.done()
    if req.method in ("POST", "PUT"):
        inst = await storages.relink(req.ctx, req.caller, inst, vid, req.parsed)
        found = storages.find_link(inst, vid)
    return req.out.entity(found)


async def networkinterface_delete(req: Request, ident: str) -> Response:
    iid, dash, _ = ident.partition("-")
    if not (dash and iid.isdigit()):
        raise NotFound(f"no networkinterface {ident}")
    inst = await computes.get(req.ctx, req.caller, iid)
    await nics.unlink(req.ctx, req.caller, inst, ident)
    return req.out.done()


async def compute_entity(req: Request, ident: str) -> Response:
    req.allow("GET", "POST", "PUT", "DELETE")
    ctx, caller = req.ctx, req.caller
    inst = await computes.get(ctx, caller, ident)
    if req.method == "DELETE":
        await computes.delete(ctx, caller, inst)
        return req.out.done()
    if req.method == "POST" and "action" in req.params:
        inst = await computes.act(ctx, caller, inst, _action(req, c.COMPUTE), req.parsed.attributes)
    elif req.method in ("POST", "PUT"):
        if req.parsed.empty:
            raise bad(f"{req.method} of a compute needs its (partial) rendering")
        inst = await computes.update(ctx, caller, req.model, inst, req.parsed)
    return req.out.entity(ent.compute(inst, req.model))


async def network_entity(req: Request, ident: str) -> Response:
    req.allow("GET", "POST", "DELETE")
    nets = {str(n.id): n for n in await req.ctx.service.networks.list(req.caller)}
    net = nets.get(ident)
    if net is None:
        raise NotFound(f"no network {ident}")
    if req.method == "DELETE":
        await req.ctx.service.networks.remove(req.caller, ident)
        return req.out.done()
    if req.method == "POST":
        if "action" in req.params:
            _action(req, c.NETWORK)
            raise not_implemented("Tashi's networks are always up: they have no up or down")
        raise OcciError(409, "a network's vlan and name do not change in Tashi")
    return req.out.entity(ent.network(net))


async def _create_network(req: Request) -> ent.Entity:
    r = req.parsed.resolved(req.model)
    if r.kind is not c.NETWORK:
        raise bad(f"POST /network/ creates a network: its rendering names the kind {c.NETWORK.id}")
    attrs = req.parsed.attributes
    vlan = attrs.get("occi.network.vlan")
    if vlan is None:  # optional (GFD.224 §3.2, multiplicity 0..1): the lowest free id
        used = {int(n.id) for n in await req.ctx.service.networks.list(req.caller)}
        vlan = next(i for i in itertools.count(1) if i not in used)
    if isinstance(vlan, bool) or not isinstance(vlan, int):
        raise bad("occi.network.vlan is the network's id: a whole number")
    title = attrs.get("occi.core.title") or attrs.get("occi.network.label")
    made = await req.ctx.service.networks.add(req.caller, vlan, _network_name(title, vlan))
    return ent.network(made)


def _network_name(title: object, vlan: int) -> str:
    """A Tashi network's name (a DNS name) from a free-text title: what is not a letter, digit,
    '.' or '-' becomes '-'; ``net<vlan>`` when nothing usable is left."""
    name = _NOT_IN_NAME.sub("-", str(title or "")).strip("-.")[:MAX_NAME].rstrip("-.")
    return name if name and not name.isdigit() else f"net{vlan}"


async def mixin_collection(req: Request, mixin: Category) -> Response:
    if req.method == "GET":
        return await listing(req, mixin)
    if mixin.id in req.model.user and req.method in ("POST", "PUT", "DELETE"):
        if req.method == "POST" and "action" in req.params:
            raise bad(f"{mixin.term} has no actions")
        return await mixins.members_change(req, mixin)
    if req.method == "POST" and "action" not in req.params:
        return await associate(req, mixin)
    if req.method == "DELETE":
        raise OcciError(409, f"{mixin.term} cannot be taken from what carries it in Tashi")
    if req.method == "PUT":
        raise not_implemented("replacing a template's collection: associate one by one (POST)")
    raise OcciError(405, f"{req.method} is not allowed on {req.path}", ("GET", "POST", "DELETE"))


async def associate(req: Request, mixin: Category) -> Response:
    """POST of locations to a template's collection: each compute takes the template
    (a resource_tpl resizes a stopped compute; an os_tpl cannot change)."""
    if mixin.id not in req.model.types and mixin.id not in req.model.images:
        raise OcciError(409, f"{mixin.term} is carried by what Tashi made, not associated")
    if not req.parsed.locations:
        raise bad("associate computes by their locations (X-OCCI-Location)")
    done = []
    for location in req.parsed.locations:
        ident = location.rstrip("/").rsplit("/", 1)[-1]
        if str(c.COMPUTE.location) not in location and not location.isdigit():
            raise bad(f"{location} is not a compute (/compute/<id>, or its id)")
        inst = await computes.get(req.ctx, req.caller, ident)
        change = Parsed(categories=(CategoryRef(mixin.term, mixin.scheme, "mixin"),))
        done.append(await computes.update(req.ctx, req.caller, req.model, inst, change))
    return req.out.collection([ent.compute(i, req.model) for i in done])
