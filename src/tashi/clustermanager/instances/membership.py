"""Who is in an instance's group (ADR 0009): the live instances of its owner with its
``group_name``; which of them wait to be placed together; which share a start in flight.
Used by ``instances.py`` (a member is not placed alone) and ``groups.py`` (teardown).

Whether a member is still part of its group's start is its start token's business
(``domain/hints.py``): members placed by one ``activateGroup`` bear one token, and only while
one of them is still on its way up does a failure tear the others down.
"""

from __future__ import annotations

from collections.abc import Iterable

from tashi.domain.errors import InvalidInput
from tashi.domain.hints import start_of
from tashi.domain.models import Instance
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceFilter, Transaction

UNPLACED = (InstanceState.Pending, InstanceState.Held)
#: States of a member whose start is under way: while a bearer of a start token is in one,
#: the start that token names is in flight.
STARTING = frozenset(
    {InstanceState.PreparingDisk, InstanceState.Activating, InstanceState.Resuming}
)


def members(tx: Transaction, inst: Instance) -> list[Instance]:
    """The live members of ``inst``'s group, ``inst`` included, in id order."""
    if inst.group_name is None:
        return [tx.instances.get(inst.id)]
    return tx.instances.find(InstanceFilter(user_id=inst.user_id, group_name=inst.group_name))


def waiting(group: Iterable[Instance]) -> list[Instance]:
    """The members to be placed together: Pending or Held and never placed (no start token).
    One that bears a token has been placed before (HA restarted it, it was resumed, its own
    start failed) and is placed alone."""
    return [i for i in group if i.state in UNPLACED and start_of(i.hints) is None]


def start_mates(tx: Transaction, inst: Instance) -> list[Instance]:
    """The members placed by the same activation as ``inst`` (bearing its start token), as
    stored now, ``inst`` included unless it was removed; none when it bears no token."""
    token = start_of(inst.hints)
    if inst.group_name is None or token is None:
        return []
    return [i for i in members(tx, inst) if start_of(i.hints) == token]


def still_starting(mates: Iterable[Instance]) -> bool:
    """Whether the start these members share is still under way."""
    return any(i.state in STARTING for i in mates)


def check_alone(tx: Transaction, inst: Instance) -> None:
    """``InvalidInput`` when ``inst`` has never been placed and has group mates waiting too: a
    group is placed together (``activateGroup``), never one member at a time."""
    if inst.group_name is None or start_of(inst.hints) is not None:
        return  # alone by definition, or placed before: it goes alone (no need to read more)
    others = [i.name for i in waiting(members(tx, inst)) if i.id != inst.id]
    if others:
        raise InvalidInput(
            f"{inst.name!r} belongs to group {inst.group_name!r} with {', '.join(others)}"
            " still to place: place them together with activateGroup"
        )
