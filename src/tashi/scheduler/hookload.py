"""The table of hooks the scheduler knows, and the loading of those ``hook1``, ``hook2``, … name.

A name in ``[Scheduler]`` (or the original's ``[Primitive]``) is looked up, case aside, in
``HOOKS``: ``DhcpDns`` (and the original's ``tashi.agents.DhcpDns``) is the DHCP/DNS hook of
``tashi.dhcpdns``, ``Recorder`` the fake of ``fakehook.py``. Each entry gives the hook's factory,
``create(context) -> InstanceHook`` (see ``hooks.py``), and the config section holding its
options (``[DhcpDns]``). A name not in the table stops the scheduler at start-up with the names
it knows: no module is imported from a string of a config file. A site's own hook is one more
line in the table, with its import beside the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tashi.dhcpdns import hook as dhcpdns
from tashi.domain.errors import InvalidInput
from tashi.scheduler import fakehook
from tashi.scheduler.hooks import HookContext, InstanceHook

HOOK_OPTION = re.compile(r"^hook(\d+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HookSpec:
    name: str  # as the docs spell it
    create: Callable[[HookContext], InstanceHook]
    section: str  # config section with the hook's options


_SPECS = (
    HookSpec("DhcpDns", dhcpdns.create, "DhcpDns"),
    HookSpec("tashi.agents.DhcpDns", dhcpdns.create, "DhcpDns"),  # the original's name
    HookSpec("Recorder", fakehook.create, "Recorder"),
)
HOOKS: dict[str, HookSpec] = {spec.name.lower(): spec for spec in _SPECS}


def hook_names(section: Mapping[str, str]) -> list[str]:
    """The values of ``hook<N>`` options in ``N`` order (empty values skipped)."""
    numbered = []
    for option, value in section.items():
        match = HOOK_OPTION.match(option)
        if match and value.strip():
            numbered.append((int(match.group(1)), value.strip()))
    return [value for _, value in sorted(numbered)]


def resolve(name: str) -> HookSpec:
    """The table's entry for ``name`` (case aside); ``InvalidInput`` naming the known ones."""
    spec = HOOKS.get(name.strip().lower())
    if spec is None:
        known = ", ".join(spec.name for spec in _SPECS)
        raise InvalidInput(f"hook {name!r} is not known (known hooks: {known})")
    return spec


def load(names: Sequence[str], context: Callable[[str], HookContext]) -> list[InstanceHook]:
    """Create each named hook; ``context(section)`` gives it its options."""
    specs = [resolve(name) for name in names]  # every name checked before any hook is made
    return [spec.create(context(spec.section)) for spec in specs]
