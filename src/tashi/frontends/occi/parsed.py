"""What a client sent, whatever its rendering: the categories named (kind, mixins, or the
action of an invocation), the attributes, the links and the locations.

``text.py`` and ``jsonrender.py`` each fill a ``Parsed``; the handlers read only this. Nothing
is checked against the model here (``resolve`` does it, with the model of the request).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tashi.frontends.occi.categories import Category
from tashi.frontends.occi.errors import bad
from tashi.frontends.occi.model import Model

Value = str | int | float | bool


@dataclass(frozen=True, slots=True)
class CategoryRef:
    """A category as a client named it: ``scheme`` + ``term`` and the class it said."""

    term: str
    scheme: str
    cls: str = ""
    #: what a mixin's definition (POST to the query interface) says besides its identifier
    title: str = ""
    location: str = ""
    rel: tuple[str, ...] = ()
    applies: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.scheme + self.term


@dataclass(frozen=True, slots=True)
class LinkRef:
    """An inline link of a resource rendering: its target, kind and attributes."""

    target: str
    kind: str = ""
    attributes: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Parsed:
    categories: tuple[CategoryRef, ...] = ()
    attributes: Mapping[str, Value] = field(default_factory=dict)
    links: tuple[LinkRef, ...] = ()
    locations: tuple[str, ...] = ()
    #: JSON's explicit members (``kind``, ``mixins``, ``action``, ``id``) where one was sent
    kind: str | None = None
    action: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.categories or self.attributes or self.links or self.locations) and (
            self.kind is None and self.action is None
        )

    def resolved(self, model: Model) -> Resolved:
        """The categories named, from ``model``; ``400`` for one it does not have."""
        known = model.by_id
        kinds: list[Category] = []
        mixins: list[Category] = []
        actions: list[Category] = []
        refs = list(self.categories)
        for named in (self.kind, self.action):
            if named:
                scheme, _, term = named.rpartition("#")
                refs.append(CategoryRef(term, scheme + "#"))
        for ref in refs:
            cat = known.get(ref.id)
            if cat is None:
                raise bad(f"unknown category {ref.id} (GET /-/ lists those of this server)")
            if ref.cls and ref.cls != cat.cls:
                raise bad(f"{ref.id} is a {cat.cls}, not a {ref.cls}")
            {"kind": kinds, "mixin": mixins, "action": actions}[cat.cls].append(cat)
        if len(kinds) > 1:
            raise bad("a rendering names one kind, not several")
        if len(actions) > 1:
            raise bad("an action invocation names one action")
        return Resolved(
            kind=kinds[0] if kinds else None,
            mixins=tuple(dict.fromkeys(mixins)),
            action=actions[0] if actions else None,
        )


@dataclass(frozen=True, slots=True)
class Resolved:
    kind: Category | None
    mixins: tuple[Category, ...]
    action: Category | None
