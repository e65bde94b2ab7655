"""The store's contract for security groups (``domain/secgroups.py``): ``tx.security_groups``,
and their tags, ``tx.security_group_tags`` (a ``contract.TagRepository`` by group id).

Kept beside ``contract.py`` rather than in it, as a repository of its own: the memory store's
is ``memsecgroups.py``, the SQL store's ``sql/secgroups.py`` (tables ``security_groups``,
``security_group_rules``, ``security_group_tags``, migration 0008); the contract tests are
``tests/storage/test_contract_security_groups.py``. Which instances are members is not kept
here: it is on the instances (their hints), as the rest of what they were launched with.

Rules every implementation keeps:

* A group's name is unique among its user's groups (``AlreadyExists``, race-free); a group
  goes with its user, its rules and tags with it.
* A rule is itself by ``Rule.key``: adding one a group holds already is ``AlreadyExists``
  (nothing of that call is added); rules come back in the order they were added.
* A group named as a rule's ``peer`` must exist when the rule is added (``NotFound``); a
  group other groups' rules name is not removed (``InvalidState``) until they are revoked.
* Text is bounded (``checked_group``, ``checked_rule``) before it is written, alike on
  every backend.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Protocol

from tashi.domain import secgroups as sg
from tashi.domain.errors import InvalidInput
from tashi.domain.ids import UserId
from tashi.domain.secgroups import Rule, SecurityGroup

PROTOCOL_MAX = 8  # characters of a rule's protocol ("icmp", "-1", "255")
RULE_KEY_MAX = 96  # characters of ``rule_key``: a protocol, two ports, a CIDR range or an id


class SecurityGroupRepository(Protocol):
    def add(self, group: SecurityGroup) -> None:
        """``NotFound`` for an unknown user; ``AlreadyExists`` for a name the user has given
        another group, or an id in use; ``InvalidInput`` for text past the bounds."""

    def get(self, group_id: str) -> SecurityGroup | None:
        """The group, or ``None``."""

    def named(self, user_id: UserId, name: str) -> SecurityGroup | None:
        """The user's group of that name (names compare exactly), or ``None``."""

    def list(self, user_id: UserId | None = None) -> list[SecurityGroup]:
        """The groups (of ``user_id`` when given), by id."""

    def remove(self, group_id: str) -> None:
        """Delete the group, its rules and its tags: ``NotFound`` if unknown,
        ``InvalidState`` while another group's rule names it."""

    def rules(self, group_ids: Sequence[str] | None = None) -> dict[str, builtins.list[Rule]]:
        """Each group's rules (of ``group_ids`` when given) in the order they were added; a
        group without rules is left out."""

    def add_rules(self, group_id: str, rules: Sequence[Rule]) -> None:
        """Add ``rules`` to the group: ``NotFound`` for an unknown group or peer,
        ``AlreadyExists`` for a rule it holds (or given twice), ``InvalidInput`` past the
        bounds. All or nothing."""

    def remove_rules(self, group_id: str, rules: Iterable[Rule]) -> int:
        """Remove the group's rules of these keys (``Rule.key``; descriptions do not count);
        how many were."""

    def referencing(self, group_id: str) -> builtins.list[str]:
        """The ids of the other groups whose rules name ``group_id`` as their peer, by id."""


def _bounded(what: str, value: str, limit: int, *, empty: bool = False) -> None:
    if (not value and not empty) or len(value) > limit:
        low = 0 if empty else 1
        raise InvalidInput(f"{what} must have {low} to {limit} characters, not {len(value)}")


def rule_key(rule: Rule) -> str:
    """``Rule.key`` as one string (what the SQL store keeps unique per group)."""
    return "|".join(str(part) for part in rule.key)


def checked_group(group: SecurityGroup) -> None:
    """The bounds both stores check before they write a group."""
    _bounded("a security group id", group.id, sg.ID_MAX)
    _bounded("a security group's name", group.name, sg.NAME_MAX)
    _bounded("a description", group.description, sg.DESCRIPTION_MAX, empty=True)


def checked_rule(rule: Rule) -> None:
    """The bounds both stores check before they write a rule."""
    _bounded("a protocol", rule.protocol, PROTOCOL_MAX)
    _bounded("a CIDR range", rule.cidr, sg.CIDR_MAX, empty=True)
    _bounded("a security group id", rule.peer, sg.ID_MAX, empty=True)
    _bounded("a description", rule.description, sg.DESCRIPTION_MAX, empty=True)
    if bool(rule.cidr) == bool(rule.peer):
        raise InvalidInput("a rule has one source: a CIDR range or a security group")
    for port in (rule.from_port, rule.to_port):
        if not -1 <= port <= 65535:
            raise InvalidInput(f"a port (or ICMP type or code) must be -1 to 65535, not {port}")
