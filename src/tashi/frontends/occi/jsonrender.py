"""OCCI's JSON rendering (GFD.226, ``application/occi+json``): categories, entities and
collections as JSON objects, and ``parse`` for what a client sends (a resource, an action
invocation, a collection of resources or of locations).

The shapes are those of the GFD.226 schema (``OCCI-schema.json``): a kind has ``term``,
``scheme``, ``title``, ``attributes`` (descriptions), ``actions``, ``parent``, ``location``; a
mixin ``depends`` and ``applies`` instead of ``parent``; a resource ``kind``, ``mixins``,
``attributes``, ``actions``, ``id``, ``links``; a link ``source`` and ``target`` as
``{"location", "kind"}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tashi.frontends.occi.categories import Attribute, Category
from tashi.frontends.occi.entities import Entity, Value
from tashi.frontends.occi.errors import bad
from tashi.frontends.occi.parsed import CategoryRef, LinkRef, Parsed

Json = dict[str, Any]


def _description(a: Attribute) -> Json:
    out: Json = {"mutable": a.mutable, "required": a.required, "type": a.type}
    if a.default is not None:
        out["default"] = a.default
    if a.description:
        out["description"] = a.description
    if a.enum:
        out["pattern"] = {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "string",
            "enum": list(a.enum),
        }
    return out


def category(cat: Category) -> Json:
    out: Json = {"term": cat.term, "scheme": cat.scheme}
    if cat.title:
        out["title"] = cat.title
    if cat.attributes:
        out["attributes"] = {a.name: _description(a) for a in cat.attributes}
    if cat.actions:
        out["actions"] = list(cat.actions)
    if cat.cls == "kind" and cat.parent:
        out["parent"] = cat.parent
    if cat.cls == "mixin":
        if cat.depends:
            out["depends"] = list(cat.depends)
        if cat.applies:
            out["applies"] = list(cat.applies)
    if cat.cls != "action" and cat.location:
        out["location"] = cat.location
    return out


def categories(cats: Iterable[Category]) -> Json:
    """The query interface: ``kinds``, ``mixins`` and ``actions``, each present when not
    empty."""
    out: Json = {}
    for cat in cats:
        out.setdefault(cat.cls + "s", []).append(category(cat))
    return out


def entity(ent: Entity) -> Json:
    out: Json = {"kind": ent.kind.id}
    if ent.mixins:
        out["mixins"] = [m.id for m in ent.mixins]
    out["attributes"] = dict(ent.attributes)
    if ent.actions:
        out["actions"] = [a.id for a in ent.actions]
    out["id"] = ent.id
    title = ent.attributes.get("occi.core.title")
    if isinstance(title, str):
        out["title"] = title
    if ent.source is not None and ent.target is not None:
        out["source"] = {"location": ent.source[0], "kind": ent.source[1]}
        out["target"] = {"location": ent.target[0], "kind": ent.target[1]}
        return out
    summary = ent.attributes.get("occi.core.summary")
    if isinstance(summary, str):
        out["summary"] = summary
    if ent.links:
        out["links"] = [entity(link) for link in ent.links]
    return out


def collection(items: Iterable[Entity]) -> Json:
    """An entity collection: ``resources`` and ``links`` (GFD.226 §3.3); a kind's collection
    always has its member, empty or not."""
    resources: list[Json] = []
    links: list[Json] = []
    for ent in items:
        (links if ent.source is not None else resources).append(entity(ent))
    out: Json = {}
    if resources or not links:
        out["resources"] = resources
    if links:
        out["links"] = links
    return out


def dumps(doc: Json) -> bytes:
    return json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n"


# --- parsing ----------------------------------------------------------------------------


def _object(doc: Any, what: str) -> Json:
    if not isinstance(doc, dict):
        raise bad(f"{what} must be a JSON object")
    return doc


def _attributes(doc: Json, what: str) -> dict[str, Value]:
    attrs = _object(doc.get("attributes", {}), f"{what}'s attributes")
    for name, val in attrs.items():
        if not isinstance(val, str | int | float | bool):
            raise bad(f"attribute {name}: Tashi takes strings, numbers and booleans here")
    return dict(attrs)


def _ref(type_id: Any, what: str) -> CategoryRef:
    if not isinstance(type_id, str) or "#" not in type_id:
        raise bad(f"{what} must be a type identifier (scheme#term), not {type_id!r}")
    scheme, _, term = type_id.rpartition("#")
    return CategoryRef(term, scheme + "#")


def _resource(doc: Json) -> Parsed:
    cats = [_ref(doc["kind"], "kind")] if "kind" in doc else []
    mixins = doc.get("mixins", [])
    if not isinstance(mixins, list):
        raise bad("mixins must be a list of type identifiers")
    cats += [_ref(m, "a mixin") for m in mixins]
    attrs = _attributes(doc, "the resource")
    for member, attr in (("title", "occi.core.title"), ("summary", "occi.core.summary")):
        if isinstance(doc.get(member), str):
            attrs.setdefault(attr, doc[member])
    links: list[LinkRef] = []
    raw_links = doc.get("links", [])
    if not isinstance(raw_links, list):
        raise bad("links must be a list of link objects")
    for raw in raw_links:
        link = _object(raw, "a link")
        target = _object(link.get("target"), "a link's target")
        if not isinstance(target.get("location"), str):
            raise bad("a link's target needs a location")
        kind = link.get("kind", "")
        links.append(
            LinkRef(
                target["location"],
                kind if isinstance(kind, str) else "",
                _attributes(link, "a link"),
            )
        )
    return Parsed(tuple(cats), attrs, tuple(links))


def _definition(doc: Json) -> CategoryRef:
    """A mixin's definition (GFD.226 §3.3, POST to the query interface)."""
    term, scheme = doc.get("term"), doc.get("scheme")
    if not isinstance(term, str) or not isinstance(scheme, str):
        raise bad("a mixin's definition has a term and a scheme (strings)")
    for many in ("depends", "applies"):
        if not isinstance(doc.get(many, []), list):
            raise bad(f"a mixin's {many} is a list of type identifiers")
    rel = [*doc.get("depends", []), *doc.get("applies", [])]
    texts = (doc.get("title", ""), doc.get("location", ""), *rel)
    if not all(isinstance(t, str) for t in texts):
        raise bad("a mixin's title, location, depends and applies are strings")
    return CategoryRef(
        term,
        scheme,
        "mixin",
        title=str(doc.get("title", "")),
        location=str(doc.get("location", "")),
        rel=tuple(doc.get("depends", [])),
        applies=tuple(doc.get("applies", [])),
    )


def parse(body: bytes) -> Parsed:
    """A resource, an action invocation (``{"action": …}``), or a collection
    (``{"resources": […]}``, whose ids or locations say which entities a mixin takes)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"the body is not JSON: {exc}") from None
    doc = _object(doc, "the rendering")
    if "action" in doc:
        ref = _ref(doc["action"], "action")
        return Parsed(action=ref.id, attributes=_attributes(doc, "the invocation"))
    defs = doc.get("mixins")
    if isinstance(defs, list) and defs and all(isinstance(d, dict) for d in defs):
        return Parsed(categories=tuple(_definition(d) for d in defs))
    if "resources" in doc or "locations" in doc:
        items = doc.get("resources", doc.get("locations"))
        if not isinstance(items, list):
            raise bad("resources must be a list")
        locs: list[str] = []
        for item in items:
            if isinstance(item, str):
                locs.append(item)
            elif isinstance(item, dict) and isinstance(
                where := item.get("location", item.get("id")), str
            ):
                locs.append(where)
            else:
                raise bad("each resource of the collection needs a location or an id")
        return Parsed(locations=tuple(locs))
    return _resource(doc)
