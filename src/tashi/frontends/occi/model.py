"""The OCCI model one request sees: the fixed categories (``categories.py``) and the templates
Tashi generates from its own tables, an ``os_tpl`` mixin per image of the image store and a
``resource_tpl`` mixin per instance type of ``[InstanceTypes]`` (the table the EC2 API's
``InstanceType`` names too).

``Model`` finds a category by its type identifier (scheme + term) or by its location, and
filters the query interface (GFD.223 §7.1: the categories related to the one asked for).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tashi.domain.instancetypes import InstanceType
from tashi.domain.models import Image
from tashi.frontends.occi import categories as c
from tashi.frontends.occi.categories import Category

#: what GFD.229's ``term`` allows; other characters of an image name become ``_``
_TERM_CHAR = re.compile(r"[^A-Za-z0-9\-_.]")
#: the root disks RunInstances and OCCI make for their instances are not templates
ROOT_SUFFIX = "-root.qcow2"

MIB_PER_GIB = 1024


def term_of(name: str) -> str:
    """``name`` as an OCCI term (letters, digits, ``-``, ``_``, ``.``; a letter or digit first)."""
    term = _TERM_CHAR.sub("_", name)
    return term if term[:1].isalnum() else "t" + term


def templates_of(images: Iterable[Image]) -> list[Image]:
    """The images offered as ``os_tpl`` mixins: every one but instances' root disks."""
    return sorted((i for i in images if not i.name.endswith(ROOT_SUFFIX)), key=lambda i: i.name)


def os_tpl(image: Image) -> Category:
    return Category(
        term_of(image.name),
        c.OS_TPL_SCHEME,
        "mixin",
        f"Image {image.name}",
        depends=(c.OS_TPL.id,),
        applies=(c.COMPUTE.id,),
        location=f"/mixin/os_tpl/{term_of(image.name)}/",
    )


def resource_tpl(kind: InstanceType) -> Category:
    gib = kind.memory / MIB_PER_GIB
    return Category(
        term_of(kind.name),
        c.RESOURCE_TPL_SCHEME,
        "mixin",
        f"Instance type {kind.name}: {kind.cores} cores, {kind.memory} MB",
        (
            c.Attribute("occi.compute.cores", "number", mutable=False, default=kind.cores),
            c.Attribute("occi.compute.memory", "number", mutable=False, default=gib),
        ),
        depends=(c.RESOURCE_TPL.id,),
        applies=(c.COMPUTE.id,),
        location=f"/mixin/resource_tpl/{term_of(kind.name)}/",
        defaults={"occi.compute.cores": kind.cores, "occi.compute.memory": gib},
    )


@dataclass(frozen=True, slots=True)
class Model:
    """Every category this server knows, for one request."""

    kinds: tuple[Category, ...]
    mixins: tuple[Category, ...]
    actions: tuple[Category, ...]
    #: os_tpl type identifier -> image name; resource_tpl type identifier -> instance type
    images: Mapping[str, str]
    types: Mapping[str, InstanceType]
    #: the type identifiers of the caller's own mixins (``usermixins.py``), listed last
    user: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        images: Iterable[Image],
        types: Mapping[str, InstanceType],
        user: Iterable[Category] = (),
    ) -> Model:
        offered = templates_of(images)
        os_tpls = [os_tpl(i) for i in offered]
        res_tpls = [resource_tpl(t) for t in types.values()]
        own = tuple(user)
        return cls(
            kinds=c.KINDS,
            mixins=(*c.MIXINS, *os_tpls, *res_tpls, *own),
            actions=c.ACTIONS,
            images={m.id: i.name for m, i in zip(os_tpls, offered, strict=True)},
            types={m.id: t for m, t in zip(res_tpls, types.values(), strict=True)},
            user=frozenset(m.id for m in own),
        )

    @property
    def all(self) -> tuple[Category, ...]:
        return (*self.kinds, *self.mixins, *self.actions)

    @property
    def by_id(self) -> dict[str, Category]:
        return {cat.id: cat for cat in self.all}

    def at(self, path: str) -> Category | None:
        """The kind or mixin whose collection is at ``path`` (with or without its last ``/``)."""
        wanted = path if path.endswith("/") else path + "/"
        return next((k for k in (*self.kinds, *self.mixins) if k.location == wanted), None)

    def related(self, wanted: Category) -> tuple[Category, ...]:
        """The query interface filtered by ``wanted`` (GFD.223 §7.1): that category, the kinds
        and mixins below it (children, templates depending on it, mixins applying to it) and
        the actions it or they define."""
        picked: list[Category] = []
        for cat in (*self.kinds, *self.mixins):
            if cat.id == wanted.id or wanted.id in (cat.parent, *cat.depends, *cat.applies):
                picked.append(cat)
        actions = {a for cat in picked for a in cat.actions}
        picked += [a for a in self.actions if a.id in actions or a.id == wanted.id]
        return tuple(dict.fromkeys(picked))

    def kind_chain(self, kind: Category) -> tuple[Category, ...]:
        """``kind`` and its parents, nearest first."""
        found = self.by_id
        chain: list[Category] = []
        current: Category | None = kind
        while current is not None:
            chain.append(current)
            current = found.get(current.parent) if current.parent else None
        return tuple(chain)
