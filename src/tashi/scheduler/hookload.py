"""Loads the hooks named by ``hook1``, ``hook2``, … of ``[Scheduler]`` (or ``[Primitive]``).

A name is a registered one (``DhcpDns``, or the original's ``tashi.agents.DhcpDns``; ``Recorder``,
the fake) or a
``module:function`` path. The module is imported only here, when the scheduler starts with the
hook configured, so that the scheduler runs without the hook's package. ``function(context)``
returns an ``InstanceHook`` (see ``hooks.py``); its options are the config section named by the
registry (``[DhcpDns]``), or for a path the module's last name.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tashi.domain.errors import InvalidInput
from tashi.scheduler.hooks import HookContext, InstanceHook

HOOK_OPTION = re.compile(r"^hook(\d+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HookSpec:
    target: str  # "module:function"
    section: str  # config section with the hook's options


REGISTRY: dict[str, HookSpec] = {
    "dhcpdns": HookSpec("tashi.dhcpdns.hook:create", "DhcpDns"),
    "tashi.agents.dhcpdns": HookSpec("tashi.dhcpdns.hook:create", "DhcpDns"),
    "recorder": HookSpec("tashi.scheduler.fakehook:create", "Recorder"),
}


def hook_names(section: Mapping[str, str]) -> list[str]:
    """The values of ``hook<N>`` options in ``N`` order (empty values skipped)."""
    numbered = []
    for option, value in section.items():
        match = HOOK_OPTION.match(option)
        if match and value.strip():
            numbered.append((int(match.group(1)), value.strip()))
    return [value for _, value in sorted(numbered)]


def resolve(name: str) -> HookSpec:
    spec = REGISTRY.get(name.strip().lower())
    if spec is not None:
        return spec
    if ":" in name:
        module = name.split(":", 1)[0]
        return HookSpec(name.strip(), module.rsplit(".", 1)[-1])
    known = ", ".join(sorted({"DhcpDns", "tashi.agents.DhcpDns", "Recorder"}))
    raise InvalidInput(f"hook {name!r} is not known ({known}, or module:function)")


def load(names: Sequence[str], context: Callable[[str], HookContext]) -> list[InstanceHook]:
    """Import and create each hook; ``context(section)`` gives it its options."""
    hooks: list[InstanceHook] = []
    for name in names:
        spec = resolve(name)
        module_name, _, function = spec.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InvalidInput(f"hook {name!r}: cannot import {module_name}: {exc}") from exc
        factory = getattr(module, function or "create", None)
        if not callable(factory):
            raise InvalidInput(f"hook {name!r}: {spec.target} is not a function")
        hook: InstanceHook = factory(context(spec.section))
        hooks.append(hook)
    return hooks
