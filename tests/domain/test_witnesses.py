"""Witness sets (ADR 0010): chosen on a ring of the up hosts; every set a host may still use
counts until it acknowledges a newer one; a host that may use an empty set has no lease that
can run out."""

from __future__ import annotations

from tashi.domain.ids import HostId
from tashi.domain.witnesses import WitnessSets, choose

H = [HostId(i) for i in range(10)]


def test_witnesses_are_the_next_hosts_on_the_ring() -> None:
    up = [H[1], H[3], H[5], H[7]]
    assert choose(H[3], up, 2) == (H[5], H[7])
    assert choose(H[7], up, 2) == (H[1], H[3])  # wraps around
    assert choose(H[4], up, 3) == (H[5], H[7], H[1])  # a host not (yet) up itself
    assert choose(H[1], [H[1]], 2) == ()
    assert choose(H[1], up, 10) == (H[3], H[5], H[7])


def test_every_set_until_acknowledged_counts() -> None:
    sets = WitnessSets()
    assert sets.lease_free() and sets.epoch == 0 and sets.voters() == frozenset()
    sets = sets.with_current([H[2], H[3]])
    assert sets.epoch == 1 and not sets.settled() and not sets.lease_free()
    assert sets.with_current([H[2], H[3]]) is sets  # unchanged: no new epoch
    sets = sets.acknowledge(1).with_current([H[3], H[4]])
    assert sets.voters() == {H[2], H[3], H[4]}  # the host may still use the first set
    later = sets.with_current([H[5]])
    assert later.voters() == {H[2], H[3], H[4], H[5]}
    assert later.acknowledge(3).voters() == {H[5]} and later.acknowledge(3).settled()
    assert later.acknowledge(2).voters() == {H[3], H[4], H[5]}
    assert later.acknowledge(9) == later and later.acknowledge(None) == later  # never sent
    assert WitnessSets.from_json(later.to_json()) == later


def test_a_set_that_may_be_empty_means_no_lease() -> None:
    alone = WitnessSets().with_current([]).acknowledge(1)
    assert alone.lease_free()
    joined = alone.with_current([H[2]])
    assert joined.lease_free()  # it may still use the empty set
    assert not joined.acknowledge(2).lease_free()
