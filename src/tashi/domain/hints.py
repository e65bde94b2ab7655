"""Hints Tashi writes on instances itself: their names start with ``__``, which no user may set
(``validation.hints``). The cluster manager writes and reads them; the scheduler reads
``GROUP_START`` to know which waiting members of a group to place together. (The target of a
migration in flight, ``__migrate_target``, lives with its only user, ``migration.py``.)

``GROUP_START`` (ADR 0009): the activation that last placed an instance. ``activateGroup``
stamps every member it places with one fresh token; ``activateVm`` stamps its instance with a
token of its own. The token answers two questions:

* *Is a group still starting?* While a member bearing a token is PreparingDisk, Activating or
  Resuming, the start that token names is under way, and a bearer that fails or exits tears
  every bearer down (all or nothing). Once none is, the members are independent instances: one
  that fails or exits later, or that HA restarts, is its own affair.
* *Is a waiting member placed with its group?* Only when it bears no token: it was never placed,
  or its group was torn down (the teardown takes the token away). A Pending or Held member that
  bears one — HA put it back to Pending, it was resumed, its own start failed — is placed alone.

``RESUME_SOURCE``: the suspend file a resumed instance is restored from. ``resumeVm`` sets it;
it makes the activation a restore (``activation``). It goes once the restore has finished
(Resuming -> Running): the node manager deletes the file then, and a later start from it would
fail, or restore an old memory image over newer disks. An instance that HA starts again
elsewhere never keeps it either (``clustermanager/instances/restart.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from tashi.domain.states import Action

GROUP_START = "__group_start"
RESUME_SOURCE = "__resume_source"


def start_of(hints: Mapping[str, str]) -> str | None:
    """The token of the activation that last placed the instance; None if never placed (or
    its group was torn down since)."""
    return hints.get(GROUP_START) or None


def new_start() -> str:
    """A token for one activation (unique: two activations never share one)."""
    return secrets.token_hex(6)


def with_start(hints: Mapping[str, str], token: str) -> dict[str, str]:
    return {**hints, GROUP_START: token}


def without_start(hints: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in hints.items() if k != GROUP_START}


def placed_alone(hints: Mapping[str, str]) -> dict[str, str]:
    """``hints`` with a start token, a new one if there was none: an instance that has run
    before and waits again (restarted by HA, resumed) is placed alone, not with its group."""
    return dict(hints) if start_of(hints) else with_start(hints, new_start())


def resume_source(hints: Mapping[str, str]) -> str | None:
    """The suspend file to restore the instance from, if it is to be restored."""
    return hints.get(RESUME_SOURCE) or None


def activation(hints: Mapping[str, str]) -> Action:
    """How placing the instance starts it: restored from its suspend file, or from its image."""
    return Action.resume_on_host if resume_source(hints) else Action.activate


def without_resume(hints: Mapping[str, str]) -> dict[str, str] | None:
    """``hints`` without the resume source; None when there is none to drop (so a save can
    leave the hints alone)."""
    if RESUME_SOURCE not in hints:
        return None
    return {k: v for k, v in hints.items() if k != RESUME_SOURCE}


def rebased(
    read: Mapping[str, str], wanted: Mapping[str, str], stored: Mapping[str, str]
) -> dict[str, str]:
    """``wanted`` (a writer's new hints, made from the ``read`` ones) applied to ``stored`` (the
    hints saved now): the keys the writer added, changed or removed, over what was saved
    meanwhile without a change of state (CreateTags on a migrating instance), which it keeps."""
    out = {k: v for k, v in stored.items() if k in wanted or k not in read}
    out.update({k: v for k, v in wanted.items() if read.get(k) != v})
    return out
