"""The scheduler's hook table (``tashi.scheduler.hookload``): the names config files use, in any
case, give their hook and its section; any other name is refused with the names it knows, and
nothing is imported from it."""

from __future__ import annotations

import sys

import httpx
import pytest

from tashi.dhcpdns import hook as dhcpdns
from tashi.domain.errors import InvalidInput
from tashi.scheduler import fakehook, hookload
from tashi.scheduler.hooks import HookContext


@pytest.mark.parametrize(
    ("name", "create", "section"),
    [
        ("DhcpDns", dhcpdns.create, "DhcpDns"),
        ("dhcpdns", dhcpdns.create, "DhcpDns"),
        ("tashi.agents.DhcpDns", dhcpdns.create, "DhcpDns"),  # the original's hook1
        (" Recorder ", fakehook.create, "Recorder"),
    ],
)
def test_known_names(name: str, create: object, section: str) -> None:
    spec = hookload.resolve(name)
    assert spec.create is create
    assert spec.section == section


@pytest.mark.parametrize("name", ["Nope", "os:system", "tashi.dhcpdns.hook:create"])
def test_an_unknown_name_is_refused_with_the_known_ones(name: str) -> None:
    before = set(sys.modules)
    with pytest.raises(InvalidInput) as caught:
        hookload.load([name], lambda section: pytest.fail("no hook may be made"))
    assert str(caught.value) == (
        f"hook {name!r} is not known (known hooks: DhcpDns, tashi.agents.DhcpDns, Recorder)"
    )
    assert set(sys.modules) == before


def test_load_gives_each_hook_its_section() -> None:
    asked: list[str] = []

    def context(section: str) -> HookContext:
        asked.append(section)
        return HookContext(httpx.AsyncClient(), {})

    (hook,) = hookload.load(["recorder"], context)
    assert isinstance(hook, fakehook.Recorder)
    assert asked == ["Recorder"]


def test_hook_names_in_number_order() -> None:
    section = {"hook10": "c", "Hook2": "b", "hook1": " a ", "hook3": " ", "other": "x"}
    assert hookload.hook_names(section) == ["a", "b", "c"]
