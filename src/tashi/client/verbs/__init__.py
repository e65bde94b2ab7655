"""Every verb of the ``tashi`` CLI, by noun, and the case-insensitive lookup of a verb's name.

``instances`` (create, list), ``lifecycle`` (destroy, shutdown, pause, suspend, migrate,
batches), ``hosts`` (getHosts, getVmLayout, getSlots), ``hostadmin`` (tashi-admin's verbs),
``cluster`` (networks, users, getImages), ``accesskeys`` (the EC2 API's keys) and ``images``
(copy, clone, rebase, remove).
``find_verb`` matches names in any case, as the original's ``matchFunction`` did, and suggests
close names for a typo.
"""

from __future__ import annotations

import difflib

from tashi.client.errors import UsageError
from tashi.client.verbs import (
    accesskeys,
    cluster,
    hostadmin,
    hosts,
    images,
    instances,
    lifecycle,
)
from tashi.client.verbs.base import Verb

ALL_VERBS: tuple[Verb, ...] = (
    *instances.VERBS,
    *lifecycle.VERBS,
    *hosts.VERBS,
    *cluster.VERBS,
    *accesskeys.VERBS,
    *images.VERBS,
    *hostadmin.VERBS,
)

#: every spelling a verb answers to (its name and aliases), in lower case -> as written
_SPELLINGS: dict[str, str] = {
    name.lower(): name for verb in ALL_VERBS for name in (verb.name, *verb.aliases)
}
_BY_NAME: dict[str, Verb] = {
    name.lower(): verb for verb in ALL_VERBS for name in (verb.name, *verb.aliases)
}


def find_verb(name: str) -> Verb:
    """The verb called ``name`` in any case, or ``UsageError`` listing close matches."""
    verb = _BY_NAME.get(name.lower())
    if verb is not None:
        return verb
    raise UsageError(f"unknown verb {name!r}; {_suggest(name)}")


def _suggest(name: str) -> str:
    lower = name.lower()
    close = [k for k in _SPELLINGS if lower and (k.startswith(lower) or lower in k)]
    if not close:
        close = difflib.get_close_matches(lower, list(_SPELLINGS), n=5, cutoff=0.6)
    unique = list(dict.fromkeys(_SPELLINGS[k] for k in close))[:6]
    if not unique:
        return "'tashi --help' lists the verbs"
    return "did you mean " + ", ".join(unique) + "? ('tashi --help' lists the verbs)"
