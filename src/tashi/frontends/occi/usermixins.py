"""User-defined mixins (GFD.221 §4.4.3 ``Mixin``, GFD.223 §3.4.2 "adding a mixin definition"):
a client POSTs a mixin's definition (term, scheme, location, and what it depends on or applies
to) to the query interface, then associates its computes and storages with it, as tags.

A definition is its owner's: it shows in that user's query interface alone, at the location
it named, and only the owner's entities carry it. An entity carries a mixin when it has the
tag ``occi:mixin:<scheme><term>`` (Tashi's tags, those EC2's CreateTags and DescribeTags show):
an instance's in its tag hints, a volume's in the volume's tags. The definitions are kept by
``MixinStore``, in memory and in a file of the cluster manager's state directory
(``mixinfile.py``) written before a definition or removal is answered, so a restart of the
cluster manager keeps them; what carries them is in the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tashi.domain.ids import UserId
from tashi.domain.models import Principal
from tashi.frontends.occi import categories as c
from tashi.frontends.occi import mixinfile
from tashi.frontends.occi.categories import Category
from tashi.frontends.occi.errors import OcciError, bad
from tashi.frontends.occi.model import Model
from tashi.frontends.occi.parsed import CategoryRef

#: the tag an entity carrying a user mixin has (the mixin's type identifier follows)
TAG = "occi:mixin:"
#: EC2's tag keys have at most 128 characters
MAX_ID = 128 - len(TAG)
#: mixins one user may define
MAX_PER_USER = 100
#: schemes of categories this server defines (a user's mixin takes another)
RESERVED = ("http://schemas.ogf.org/occi/", "http://schemas.tashi.apache.org/occi/")
#: the kinds whose entities can carry a user mixin (they have tags)
TAGGABLE = (c.COMPUTE.id, c.STORAGE.id)


def tag_of(mixin_id: str) -> str:
    return TAG + mixin_id


def carried(tags: Mapping[str, str], model: Model) -> tuple[Category, ...]:
    """The user mixins of ``model`` that an entity with ``tags`` carries."""
    found = model.by_id
    return tuple(
        found[k[len(TAG) :]]
        for k in sorted(tags)
        if k.startswith(TAG) and k[len(TAG) :] in model.user
    )


@dataclass(slots=True)
class MixinStore:
    """Every user's mixin definitions, by owner and type identifier, kept in ``path`` (none:
    in memory only, as a unit test's). A change is saved before it is made here: one the file
    does not take (``BackendFailure``) is not made."""

    defined: dict[UserId, dict[str, Category]] = field(default_factory=dict)
    path: Path | None = None
    #: one change at a time: each writes the whole file
    _changing: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def load(cls, path: Path) -> MixinStore:
        """The definitions ``path`` keeps (``mixinfile.read``: none if it is missing or
        unreadable, which is logged), saved there from now on."""
        return cls(mixinfile.read(path, MAX_PER_USER), path)

    def of(self, caller: Principal) -> tuple[Category, ...]:
        return tuple(self.defined.get(caller.user_id, {}).values())

    async def define(self, caller: Principal, ref: CategoryRef, model: Model) -> Category:
        """Add the mixin ``ref`` defines for ``caller``; the same definition again is the one
        there (200, nothing changes); another with a taken identifier or location is 409."""
        if ref.cls not in ("", "mixin"):
            raise bad(f"only mixins are defined by a client, not a {ref.cls} ({ref.id})")
        if not ref.scheme.endswith("#") or "://" not in ref.scheme:
            raise bad(f"a mixin's scheme is a URI ending with '#', not {ref.scheme!r}")
        if ref.scheme.startswith(RESERVED):
            raise OcciError(409, f"the scheme {ref.scheme} is this server's: take your own")
        if len(ref.id) > MAX_ID:
            raise bad(f"a mixin's scheme and term have at most {MAX_ID} characters together")
        mixin = self._category(ref, model)
        async with self._changing:
            mine = self.defined.get(caller.user_id, {})
            if mine.get(mixin.id) == mixin:
                return mixin
            if mixin.id in model.by_id or mixin.id in mine:
                raise OcciError(409, f"the mixin {mixin.id} is defined already (DELETE it first)")
            if len(mine) >= MAX_PER_USER:
                raise OcciError(409, f"a user defines at most {MAX_PER_USER} mixins")
            await self._save(caller.user_id, {**mine, mixin.id: mixin})
        return mixin

    async def _save(self, user: UserId, mine: dict[str, Category]) -> None:
        """Make ``mine`` the definitions of ``user``: in the file first, then here."""
        defined = {**self.defined, user: mine}
        if not mine:
            del defined[user]
        if self.path is not None:
            await asyncio.to_thread(mixinfile.write, self.path, defined)
        self.defined = defined

    @staticmethod
    def _category(ref: CategoryRef, model: Model) -> Category:
        location = ref.location or f"/mixin/{ref.term}/"
        if not (location.startswith("/") and location.endswith("/")) or "?" in location:
            raise bad(f"a mixin's location is a path ending with '/', not {location!r}")
        taken = model.at(location)
        if taken is not None and taken.id != ref.id:
            raise OcciError(409, f"{location} is the collection of {taken.id}")
        first = location.strip("/").split("/", 1)[0]
        if f"/{first}/" in {k.location for k in model.kinds} or location.startswith(("/-/", "/.")):
            raise OcciError(409, f"{location} is inside a kind's collection or the query interface")
        found = model.by_id
        for rel in ref.rel:
            if rel not in found or found[rel].cls != "mixin":
                raise bad(f"a mixin depends on mixins: {rel} is not one of this server's")
        for kind in ref.applies:
            if kind not in found or found[kind].cls != "kind":
                raise bad(f"a mixin applies to kinds: {kind} is not one of this server's")
        return Category(
            ref.term,
            ref.scheme,
            "mixin",
            ref.title,
            depends=ref.rel,
            applies=ref.applies,
            location=location,
        )

    async def remove(self, caller: Principal, ref: CategoryRef) -> Category:
        """Forget the caller's mixin ``ref`` (404 if the caller has none such)."""
        async with self._changing:
            mine = dict(self.defined.get(caller.user_id, {}))
            mixin = mine.pop(ref.id, None)
            if mixin is None:
                raise OcciError(404, f"you defined no mixin {ref.id}")
            await self._save(caller.user_id, mine)
        return mixin
