"""What a request can see, as OCCI entities: the caller's computes with their links, the
networks, the storage (the caller's volumes, then the other disks of the caller's computes),
read once per request
(``Snapshot``); the members of a kind's or mixin's collection, and GFD.223 §7's filters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tashi.clustermanager.volumes.service import Listed
from tashi.domain.models import Image, Instance, Network, Principal
from tashi.domain.volumes import volume_of
from tashi.frontends.occi import computes, storages, text
from tashi.frontends.occi import entities as ent
from tashi.frontends.occi import storageviews as sv
from tashi.frontends.occi.categories import Category
from tashi.frontends.occi.context import OcciContext
from tashi.frontends.occi.entities import Entity
from tashi.frontends.occi.errors import OcciError, bad
from tashi.frontends.occi.model import Model
from tashi.frontends.occi.parsed import CategoryRef, Parsed, Value

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Snapshot:
    instances: Sequence[Instance]
    networks: Mapping[int, Network]
    images: Mapping[str, Image]
    model: Model
    volumes: Sequence[Listed] = ()

    @classmethod
    async def take(cls, ctx: OcciContext, caller: Principal, model: Model) -> Snapshot:
        instances = await computes.visible(ctx, caller)
        networks = {int(n.id): n for n in await ctx.service.networks.list(caller)}
        images = {i.name: i for i in await ctx.service.images.list(caller)}
        volumes = await storages.listed(ctx, caller)
        return cls(instances, networks, images, model, volumes)

    def computes(self) -> list[Entity]:
        return [ent.compute(i, self.model) for i in self.instances]

    def all(self) -> list[Entity]:
        """Every entity: resources first, then links."""
        comps = self.computes()
        nets = [ent.network(n) for n in self.networks.values()]
        vols = [sv.storage(v.volume, v.tags, self.model) for v in self.volumes]
        disks = [
            ent.storage(i, n, self.images)
            for i in self.instances
            for n in range(len(i.disks))
            if volume_of(i.disks[n].uri) is None
        ]
        links = [link for comp in comps for link in comp.links]
        return [*comps, *nets, *vols, *disks, *links]


def members(snapshot: Snapshot, cat: Category) -> list[Entity]:
    """The entities of ``cat``'s collection: of that kind or one below it, or carrying that
    mixin (or one depending on it: an image's os_tpl is an ``os_tpl``)."""
    return [e for e in snapshot.all() if cat.id in _types(e, snapshot.model)]


def _types(e: Entity, model: Model) -> set[str]:
    types = {k.id for k in model.kind_chain(e.kind)}
    for m in e.mixins:
        types |= {m.id, *m.depends}
    return types


def query_filters(params: Iterable[tuple[str, str]], parsed: Parsed) -> Parsed:
    """The filter of a GET: the request's ``Category`` and ``X-OCCI-Attribute`` headers
    (GFD.223 §7) and, as well, ``?category=<scheme#term>`` and ``?attribute=<name>=<value>``."""
    cats = list(parsed.categories)
    attrs: dict[str, Value] = dict(parsed.attributes)
    for key, raw in params:
        if key == "category":
            scheme, hash_, term = raw.rpartition("#")
            if not hash_:
                raise bad("?category= takes a type identifier: <scheme>#<term>")
            cats.append(CategoryRef(term, scheme + "#"))
        elif key == "attribute":
            name, value = text.parse_attribute(raw)
            attrs[name] = value
    return Parsed(tuple(cats), attrs)


def matching(items: Sequence[Entity], model: Model, wanted: Parsed) -> list[Entity]:
    ids = {ref.id for ref in wanted.categories}
    found = model.by_id
    for ref in ids:
        if ref not in found:
            raise bad(f"unknown category {ref} in the filter")
    return [
        e
        for e in items
        if ids <= _types(e, model)
        and all(str(e.attributes.get(k)) == str(v) for k, v in wanted.attributes.items())
    ]


def page(items: Sequence[Entity], params: Mapping[str, str]) -> Sequence[Entity]:
    """GFD.223 §6: ``?page=<n>&number=<m>``, pages counted from 1; 413 for a page over
    ``MAX_PAGE``."""
    if "page" not in params and "number" not in params:
        return items
    try:
        number = int(params.get("number", str(MAX_PAGE)))
        index = int(params.get("page", "1"))
    except ValueError:
        raise bad("page and number are whole numbers") from None
    if number > MAX_PAGE:
        raise OcciError(413, f"number is at most {MAX_PAGE}")
    if number < 1 or index < 1:
        raise bad("page and number start at 1")
    return items[(index - 1) * number : index * number]
