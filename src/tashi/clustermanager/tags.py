"""``TagService``: tags on instances, images, key pairs, volumes, snapshots and security groups
(EC2's CreateTags, DeleteTags, DescribeTags), with the rules of ``domain/tags.py``.

Who may do what: users tag their own instances, key pairs, volumes, snapshots and security
groups (those an administrator's own too), administrators (and the cluster's daemons) every
instance, volume and snapshot; only
administrators tag images, and everyone sees images' tags. A resource the caller may not see
is ``UnknownTarget``, as one that does not exist.

One request is one unit of work: every resource it names is checked and changed, or none is.
An instance's tags are its ``__ec2.tag.*`` hints, saved by a compare-and-swap of its state to
the same state: an instance whose state changed since it was read in the unit
(``StateConflict``) is read again and the unit runs again, so neither the tags nor the new
state are lost. (A state change that replaces the hints from an older read keeps the tags too:
``InstanceService._move`` rebases its hints on the stored ones, ``hints.rebased``.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from tashi.clustermanager.accounts.auth import require_admin
from tashi.clustermanager.database import Database
from tashi.clustermanager.images.service import ImageService
from tashi.domain import tags
from tashi.domain.clock import Clock
from tashi.domain.errors import NotFound, StateConflict
from tashi.domain.ids import InstanceId
from tashi.domain.launches import TAG_PREFIX
from tashi.domain.launches import tags as instance_tags
from tashi.domain.models import Instance, Principal
from tashi.domain.tags import Kind, Tag, Target, UnknownTarget
from tashi.domain.volumes import Snapshot, Volume
from tashi.storage.contract import InstanceChanges, InstanceFilter, TagRepository, Transaction

ATTEMPTS = 5  # units run again after a StateConflict before it is the answer
Change = Callable[[Target, dict[str, str]], dict[str, str]]


class TagService:
    def __init__(self, db: Database, clock: Clock, images: ImageService) -> None:
        self._db = db
        self._clock = clock
        self._images = images

    async def create(
        self, caller: Principal, targets: Sequence[Target], new: Mapping[str, str]
    ) -> None:
        """Add ``new`` to every target's tags (a key a target has takes the new value).
        ``InvalidInput`` for a tag against the rules, ``TooManyTags`` past 50 a resource."""
        wanted = tags.checked(new)
        await self._check_images(caller, targets, "tagging images")
        await self._change(caller, targets, lambda t, now: tags.merged(now, wanted, t))

    async def delete(
        self,
        caller: Principal,
        targets: Sequence[Target],
        which: Mapping[str, str | None] | None = None,
    ) -> None:
        """Remove tags from every target, as ``tags.removed`` says (``None``: all of them);
        keys starting ``aws:`` cannot be named (``InvalidInput``)."""
        for key in which or {}:
            tags.key(key)
        await self._check_images(caller, targets, "removing images' tags")
        await self._change(caller, targets, lambda _, now: tags.removed(now, which))

    async def describe(self, caller: Principal) -> list[Tag]:
        """Every tag the caller may see: of their instances (an admin's: all), their key
        pairs, and every image."""
        images = {i.name for i in await self._images.list(caller)}

        def read(tx: Transaction) -> list[Tag]:
            owner = None if caller.is_trusted else caller.user_id
            found = [
                Tag(Target(Kind.instance, str(inst.id)), k, v)
                for inst in tx.instances.find(InstanceFilter(user_id=owner))
                for k, v in instance_tags(inst.hints).items()
            ]
            pairs = [p.id for p in tx.key_pairs.list(caller.user_id)]
            volumes = [v.id for v in tx.volumes.list(user_id=owner)]
            snapshots = [s.id for s in tx.snapshots.list(user_id=owner)]
            groups = [g.id for g in tx.security_groups.list(caller.user_id)]
            for kind, tagged in (
                (Kind.key_pair, tx.key_pair_tags.of(pairs)),
                (Kind.image, {n: t for n, t in tx.image_tags.of().items() if n in images}),
                (Kind.volume, tx.volume_tags.of(volumes)),
                (Kind.snapshot, tx.snapshot_tags.of(snapshots)),
                (Kind.security_group, tx.security_group_tags.of(groups)),
            ):
                found += [
                    Tag(Target(kind, ref), k, v)
                    for ref, kv in tagged.items()
                    for k, v in kv.items()
                ]
            return found

        return await self._db.read(read)

    async def forget_image(self, name: str) -> int:
        """Drop the tags of an image that was removed (an image made again under its name
        starts bare); how many there were."""
        return await self._db.write(lambda tx: tx.image_tags.delete(name))

    async def of_images(self) -> dict[str, dict[str, str]]:
        """Each tagged image's tags, by image name (images everyone may see)."""
        return await self._db.read(lambda tx: tx.image_tags.of())

    async def _check_images(self, caller: Principal, targets: Sequence[Target], doing: str) -> None:
        names = {t.ref for t in targets if t.kind is Kind.image}
        if not names:
            return
        known = {i.name for i in await self._images.list(caller)}
        for name in sorted(names - known):
            raise UnknownTarget(Target(Kind.image, name))
        require_admin(caller, doing)

    async def _change(self, caller: Principal, targets: Sequence[Target], change: Change) -> None:
        def run(tx: Transaction) -> None:
            for target in dict.fromkeys(targets):
                if target.kind is Kind.instance:
                    self._change_instance(tx, caller, target, change)
                else:
                    self._change_stored(tx, caller, target, change)

        for attempt in range(ATTEMPTS):
            try:
                await self._db.write(run)
                return
            except StateConflict:  # an instance changed state meanwhile: read it again
                if attempt == ATTEMPTS - 1:
                    raise

    def _change_instance(
        self, tx: Transaction, caller: Principal, target: Target, change: Change
    ) -> None:
        inst = _instance(tx, caller, target)
        current = instance_tags(inst.hints)
        after = change(target, current)
        if after == current:
            return
        kept = {k: v for k, v in inst.hints.items() if not k.startswith(TAG_PREFIX)}
        hints = {**kept, **{TAG_PREFIX + k: v for k, v in after.items()}}
        tx.instances.transition(
            inst.id,
            inst.state,
            inst.state,
            now=self._clock.now(),
            changes=InstanceChanges(hints=hints),
        )

    @staticmethod
    def _change_stored(tx: Transaction, caller: Principal, target: Target, change: Change) -> None:
        if target.kind is Kind.key_pair:
            pair = tx.key_pairs.get(target.ref)
            if pair is None or pair.user_id != caller.user_id:
                raise UnknownTarget(target)
            repo = tx.key_pair_tags
        elif target.kind in (Kind.volume, Kind.snapshot):
            repo = _owned(tx, caller, target)
        elif target.kind is Kind.security_group:  # its owner's alone, as the group itself
            group = tx.security_groups.get(target.ref)
            if group is None or group.user_id != caller.user_id:
                raise UnknownTarget(target)
            repo = tx.security_group_tags
        else:
            repo = tx.image_tags
        current = repo.of([target.ref]).get(target.ref, {})
        after = change(target, current)
        gone = [k for k in current if k not in after]
        if gone:
            repo.delete(target.ref, gone)
        changed = {k: v for k, v in after.items() if current.get(k) != v}
        if changed:
            repo.put(target.ref, changed)


def _owned(tx: Transaction, caller: Principal, target: Target) -> TagRepository:
    """The tags of a volume or snapshot the caller may see (``UnknownTarget`` otherwise)."""
    if target.kind is Kind.volume:
        found: Volume | Snapshot | None = tx.volumes.get(target.ref)
        repo = tx.volume_tags
    else:
        found = tx.snapshots.get(target.ref)
        repo = tx.snapshot_tags
    if found is None or not (caller.is_trusted or found.user_id == caller.user_id):
        raise UnknownTarget(target)
    return repo


def _instance(tx: Transaction, caller: Principal, target: Target) -> Instance:
    try:
        inst = tx.instances.get(InstanceId(int(target.ref)))
    except (NotFound, ValueError):
        raise UnknownTarget(target) from None
    if inst.user_id != caller.user_id and not caller.is_trusted:
        raise UnknownTarget(target)
    return inst
