"""The in-memory store's security groups (``memory.py``; the contract is
``storage/secgroups.py``).

Rules are kept one entry per (group, rule key), in the order they were added (a dict keeps it,
and a write transaction's copy of it too: ``memtables.DICTS``), so that the copy is all it
takes to roll a unit back.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence

from tashi.domain.errors import AlreadyExists, InvalidState, NotFound
from tashi.domain.ids import UserId
from tashi.domain.secgroups import Rule, SecurityGroup
from tashi.storage.memtables import Tables, aware
from tashi.storage.secgroups import checked_group, checked_rule


class MemorySecurityGroups:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(self, group: SecurityGroup) -> None:
        checked_group(group)
        aware(group.created_at)
        if group.user_id not in self._t.users:
            raise NotFound(f"user {group.user_id} does not exist")
        if group.id in self._t.security_groups:
            raise AlreadyExists(f"the security group {group.id} exists already")
        if self.named(group.user_id, group.name) is not None:
            raise AlreadyExists(f"the security group '{group.name}' already exists")
        self._t.security_groups[group.id] = group

    def get(self, group_id: str) -> SecurityGroup | None:
        return self._t.security_groups.get(group_id)

    def named(self, user_id: UserId, name: str) -> SecurityGroup | None:
        found = (
            g for g in self._t.security_groups.values() if (g.user_id, g.name) == (user_id, name)
        )
        return next(found, None)

    def list(self, user_id: UserId | None = None) -> list[SecurityGroup]:
        groups = [g for g in self._t.security_groups.values() if user_id in (None, g.user_id)]
        return sorted(groups, key=lambda g: g.id)

    def remove(self, group_id: str) -> None:
        if group_id not in self._t.security_groups:
            raise NotFound(f"no security group {group_id}")
        if users := self.referencing(group_id):
            raise InvalidState(f"the rules of {', '.join(users)} name {group_id}")
        drop_groups(self._t, {group_id})

    def rules(self, group_ids: Sequence[str] | None = None) -> dict[str, builtins.list[Rule]]:
        wanted = None if group_ids is None else set(group_ids)
        out: dict[str, builtins.list[Rule]] = {}
        for (group, _), rule in self._t.security_group_rules.items():
            if wanted is None or group in wanted:
                out.setdefault(group, []).append(rule)
        return out

    def add_rules(self, group_id: str, rules: Sequence[Rule]) -> None:
        if group_id not in self._t.security_groups:
            raise NotFound(f"no security group {group_id}")
        added: dict[tuple[str, tuple[str | int, ...]], Rule] = {}
        for rule in rules:
            checked_rule(rule)
            if rule.peer and rule.peer not in self._t.security_groups:
                raise NotFound(f"no security group {rule.peer}")
            entry = (group_id, rule.key)
            if entry in self._t.security_group_rules or entry in added:
                raise AlreadyExists(f'the specified rule "{rule.shown()}" already exists')
            added[entry] = rule
        self._t.security_group_rules.update(added)

    def remove_rules(self, group_id: str, rules: Iterable[Rule]) -> int:
        rows = self._t.security_group_rules
        gone = [e for e in {(group_id, r.key) for r in rules} if rows.pop(e, None) is not None]
        return len(gone)

    def referencing(self, group_id: str) -> builtins.list[str]:
        users = {g for (g, _), r in self._t.security_group_rules.items() if r.peer == group_id}
        return sorted(users - {group_id})


def drop_groups(t: Tables, gone: set[str]) -> None:
    """Remove these groups, their rules (and the rules of others that name them) and tags."""
    t.security_groups = {k: g for k, g in t.security_groups.items() if k not in gone}
    t.security_group_rules = {
        k: r for k, r in t.security_group_rules.items() if k[0] not in gone and r.peer not in gone
    }
    t.security_group_tags = {k: v for k, v in t.security_group_tags.items() if k[0] not in gone}


def drop_user_groups(t: Tables, user_id: UserId) -> None:
    """A removed user's groups go with them, with their rules and tags."""
    drop_groups(t, {k for k, g in t.security_groups.items() if g.user_id == user_id})
