"""Instances as DescribeInstances last wrote them, kept so that an instance that did not change
is not written again: the XML of 1,000 instances is some 40,000 elements, most of the answer's
time, and a client polling DescribeInstances asks for the same, mostly unchanged, instances
again and again.

An instance's XML is a pure function of what ``instanceviews.render`` reads: its record (every
field of ``Instance``, a frozen value: hints hold its launch, tags and security groups), its
``AmiLaunchIndex``, its state as shown and the records of the volumes attached to it (the
site's defaults are the context's, fixed at start). The kept XML is used only when all of them
equal those it was written from, compared by value: a change of any, by whatever path, writes
it anew; nothing has to tell the cache. Each instance's launch (``launch_of``, read from its
hints) is kept the same way, for the filters and reservations of every instance listed. At
most ``limit`` instances are kept (the oldest written go first), about 1.3 KB each.

A reservation (its id, owner and instances, EC2's ``Reservation``) is kept the same way
(``reservation``): its XML is a pure function of its id, its owner's account and its
instances' XML in order, so it is used again while those are the very ones it was written
from (the instances' kept XML, compared by identity first); most reservations hold one
instance, and writing their 1,000 wrappers anew was as long as the instances' kept XML took.

Neighbours: ``actions/instances.py`` asks it for the launch of each instance listed and for
each instance of the page; ``protocol.write`` writes one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tashi.domain.launches import Launch
from tashi.domain.models import Instance
from tashi.domain.states import InstanceState
from tashi.domain.volumes import Volume
from tashi.frontends.ec2.instanceviews import Defaults, Shown, launch_of
from tashi.frontends.ec2.protocol import Written

LIMIT = 5000  # instances kept


@dataclass(slots=True)
class _Kept:
    inst: Instance  # the record both below are made from
    launch: Launch
    #: what it was written with besides its record (launch index, state, volumes), and how
    written: tuple[int, InstanceState, tuple[Volume, ...], Written] | None = None


@dataclass(frozen=True, slots=True)
class _Reservation:
    owner: str
    instances: tuple[Written, ...]
    written: Written


@dataclass
class InstanceCache:
    limit: int = LIMIT
    _kept: dict[int, _Kept] = field(default_factory=dict)
    _reservations: dict[str, _Reservation] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def launch(self, inst: Instance, defaults: Defaults) -> Launch:
        """``launch_of(inst)``, kept while the record is equal (it is made from its hints)."""
        kept = self._same(inst)
        if kept is not None:
            return kept.launch
        launch = launch_of(inst, defaults)
        self._keep(_Kept(inst, launch))
        return launch

    def written(
        self,
        shown: Shown,
        volumes: Sequence[Volume],
        write: Callable[[Shown, Sequence[Volume]], Written],
    ) -> Written:
        """``shown`` (with ``volumes``, the records of its attached volumes) as ``write``
        writes it: kept from an earlier call if nothing it is made from changed."""
        kept = self._same(shown.inst)
        if kept is not None and kept.written is not None:
            index, state, attached, made = kept.written
            if (index, state, attached) == (shown.launch_index, shown.state, tuple(volumes)):
                self.hits += 1
                return made
        self.misses += 1
        made = write(shown, volumes)
        key = (shown.launch_index, shown.state, tuple(volumes), made)
        self._keep(_Kept(shown.inst, shown.launch, key))
        return made

    def reservation(
        self,
        reservation: str,
        owner: str,
        instances: Sequence[Written],
        write: Callable[[str, str, Sequence[Written]], Written],
    ) -> Written:
        """The reservation ``reservation`` of ``owner`` holding ``instances`` (written, in
        order) as ``write`` writes it: kept from an earlier call if all of them are the same."""
        members = tuple(instances)
        kept = self._reservations.get(reservation)
        if kept is not None and kept.owner == owner and kept.instances == members:
            return kept.written
        made = write(reservation, owner, members)
        self._reservations.pop(reservation, None)  # insertion order: the order of writing
        self._reservations[reservation] = _Reservation(owner, members, made)
        while len(self._reservations) > self.limit:
            del self._reservations[next(iter(self._reservations))]
        return made

    def _same(self, inst: Instance) -> _Kept | None:
        """What is kept of ``inst``'s record if it is equal to it (then held as ``inst``, so
        that the next look, in the same call, is an identity)."""
        kept = self._kept.get(inst.id)
        if kept is None:
            return None
        if kept.inst is not inst:
            if kept.inst != inst:
                return None
            kept.inst = inst
        return kept

    def _keep(self, kept: _Kept) -> None:
        self._kept.pop(kept.inst.id, None)  # so that insertion order is the order of writing
        self._kept[kept.inst.id] = kept
        while len(self._kept) > self.limit:
            del self._kept[next(iter(self._kept))]

    def forget(self, instance_id: int) -> None:
        self._kept.pop(instance_id, None)

    def __len__(self) -> int:
        return len(self._kept)
