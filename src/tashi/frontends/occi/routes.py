"""Where each request goes (GFD.223 §8-11): the query interface, a kind's or mixin's
collection, one entity; each answers the methods GFD.223 defines for it and 405 (with
``Allow``) for the others.

Path (GET; POST; PUT; DELETE):

* ``/-/``, ``/.well-known/org/ogf/occi/-/``: the model; 501 (no user mixins); -; 501
* ``/compute/``: list; create or ``?action=``; -; delete the caller's own
* ``/compute/<id>``: read; partial update or ``?action=``; update; delete
* ``/network/``, ``/network/<id>``: list, read; create (admin); -; delete (admin)
* ``/storage/…``, ``/link/…``: list, read; 501 (they follow their compute)
* ``/mixin/…/`` (a mixin's collection): list; associate; 501; 409
* ``/resource/``, ``/link/``, ``/``: list
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import Response

from tashi.domain.errors import NotFound
from tashi.domain.models import Principal
from tashi.domain.validation import MAX_NAME
from tashi.frontends.occi import categories as c
from tashi.frontends.occi import collections as coll
from tashi.frontends.occi import computes
from tashi.frontends.occi import entities as ent
from tashi.frontends.occi.categories import Category
from tashi.frontends.occi.context import OcciContext
from tashi.frontends.occi.errors import OcciError, bad, not_implemented
from tashi.frontends.occi.model import Model
from tashi.frontends.occi.parsed import CategoryRef, Parsed
from tashi.frontends.occi.render import Writer

QUERY = ("/-/", "/.well-known/org/ogf/occi/-/")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass(frozen=True, slots=True)
class Request:
    """One request, read: who, what, where, and how to answer."""

    ctx: OcciContext
    caller: Principal
    model: Model
    method: str
    path: str
    params: Mapping[str, str]
    pairs: tuple[tuple[str, str], ...]
    parsed: Parsed
    out: Writer

    def allow(self, *methods: str) -> None:
        if self.method not in methods:
            raise OcciError(405, f"{self.method} is not allowed on {self.path}", methods)


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
    if req.method in ("POST", "DELETE"):
        raise not_implemented("Tashi has no user-defined mixins")
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
    if kind in (c.STORAGE, c.NETWORKINTERFACE, c.STORAGELINK) and req.method in ("POST", "DELETE"):
        raise not_implemented(
            f"{kind.term} follows its compute in Tashi: its disks come from the os_tpl, its"
            " network interfaces from the networkinterface links it is created with"
        )
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
    inst = await computes.create(ctx, caller, req.model, req.parsed)
    return req.out.created(ent.compute(inst, req.model))


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
    if kind is c.NETWORKINTERFACE and n < len(inst.nics):
        return ent.networkinterface(inst, n)
    raise NotFound(f"no {kind.term} {ident}")


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
    if req.method == "POST" and "action" not in req.params:
        return await associate(req, mixin)
    if req.method == "DELETE":
        raise OcciError(409, f"{mixin.term} cannot be taken from what carries it in Tashi")
    if req.method == "PUT":
        raise not_implemented("replacing a mixin's collection: associate one by one (POST)")
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
