"""Who is in an instance's group (ADR 0009): the live instances of its owner with its
``group_name``. Used by ``instances.py`` (a member is not placed alone) and ``groups.py``."""

from __future__ import annotations

from tashi.domain.errors import InvalidInput
from tashi.domain.models import Instance
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceFilter, Transaction

UNPLACED = (InstanceState.Pending, InstanceState.Held)


def members(tx: Transaction, inst: Instance) -> list[Instance]:
    """The live members of ``inst``'s group, ``inst`` included, in id order."""
    if inst.group_name is None:
        return [tx.instances.get(inst.id)]
    mine = tx.instances.find(InstanceFilter(user_id=inst.user_id))
    return [i for i in mine if i.group_name == inst.group_name]


def check_alone(tx: Transaction, inst: Instance) -> None:
    """``InvalidInput`` when ``inst`` has group mates still waiting to be placed: a group is
    placed together (``activateGroup``), never one member at a time."""
    if inst.group_name is None:
        return  # alone by definition (and no need to read it again)
    waiting = [i.name for i in members(tx, inst) if i.id != inst.id and i.state in UNPLACED]
    if waiting:
        raise InvalidInput(
            f"{inst.name!r} belongs to group {inst.group_name!r} with {', '.join(waiting)}"
            " still to place: place them together with activateGroup"
        )
