"""Instances as DescribeInstances last wrote them, kept so that an instance that did not change
is not written again: the XML of 1,000 instances is some 40,000 elements, most of the answer's
time, and a client polling DescribeInstances asks for the same, mostly unchanged, instances
again and again.

An instance's XML is a pure function of what ``instanceviews.render`` reads: its record (every
field of ``Instance``, a frozen value: hints hold its launch, tags and security groups), its
``AmiLaunchIndex``, its state as shown and the records of the volumes attached to it (the
site's defaults are the context's, fixed at start). The kept XML is used only when all of them
equal those it was written from, compared by value: a change of any, by whatever path, writes
it anew; nothing has to tell the cache. At most ``limit`` instances are kept (the oldest
written go first), about 1.3 KB each.

Neighbours: ``actions/instances.py`` asks it for each instance of a page; ``protocol.write``
writes one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tashi.domain.models import Instance
from tashi.domain.states import InstanceState
from tashi.domain.volumes import Volume
from tashi.frontends.ec2.instanceviews import Shown
from tashi.frontends.ec2.protocol import Written

LIMIT = 5000  # instances kept

_Key = tuple[Instance, int, InstanceState, tuple[Volume, ...]]


@dataclass
class InstanceCache:
    limit: int = LIMIT
    _kept: dict[int, tuple[_Key, Written]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def written(
        self,
        shown: Shown,
        volumes: Sequence[Volume],
        write: Callable[[Shown, Sequence[Volume]], Written],
    ) -> Written:
        """``shown`` (with ``volumes``, the records of its attached volumes) as ``write``
        writes it: kept from an earlier call if nothing it is made from changed."""
        # the launch is the instance's own (its hints and the context's defaults)
        key = (shown.inst, shown.launch_index, shown.state, tuple(volumes))
        iid = shown.inst.id
        kept = self._kept.get(iid)
        if kept is not None and kept[0] == key:
            self.hits += 1
            return kept[1]
        self.misses += 1
        made = write(shown, volumes)
        self._kept.pop(iid, None)  # so that insertion order is the order of writing
        self._kept[iid] = (key, made)
        while len(self._kept) > self.limit:
            del self._kept[next(iter(self._kept))]
        return made

    def forget(self, instance_id: int) -> None:
        self._kept.pop(instance_id, None)

    def __len__(self) -> int:
        return len(self._kept)
