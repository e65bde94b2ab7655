"""The security group repository over SQL (``storage/secgroups.py``'s contract).

Tables ``security_groups``, ``security_group_rules`` and ``security_group_tags`` of
``tables.py`` (the tags through ``keypairs.SqlTags``). A group's name is unique per user by
``uq_security_groups_user_name``, a rule per group by ``uq_security_group_rules_key`` (its key
as text), both race-free; rules keep their order by their id. A group goes with its user, and
its rules and tags with it, by ``ON DELETE CASCADE``. Errors pass through ``db.py``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from tashi.domain.errors import AlreadyExists, InvalidState, NotFound, TashiError
from tashi.domain.ids import UserId
from tashi.domain.secgroups import Rule, SecurityGroup
from tashi.storage.secgroups import checked_group, checked_rule, rule_key
from tashi.storage.sql.db import Db, Violation
from tashi.storage.sql.tables import security_group_rules as t_rules
from tashi.storage.sql.tables import security_groups as t_groups

_GROUP = (
    t_groups.c.id,
    t_groups.c.user_id,
    t_groups.c.name,
    t_groups.c.description,
    t_groups.c.created_at,
)
_RULE = (
    t_rules.c.group_id,
    t_rules.c.protocol,
    t_rules.c.from_port,
    t_rules.c.to_port,
    t_rules.c.cidr,
    t_rules.c.peer_id,
    t_rules.c.description,
    t_rules.c.egress,
)


def _group(row: Sequence[object]) -> SecurityGroup:
    group_id, user_id, name, description, created_at = row
    return SecurityGroup(
        id=str(group_id),
        user_id=UserId(int(str(user_id))),
        name=str(name),
        description=str(description),
        created_at=created_at,  # type: ignore[arg-type]  # UtcDateTime: an aware datetime
    )


def _rule(row: Sequence[object]) -> Rule:
    _, protocol, low, high, cidr, peer, description, egress = row
    return Rule(
        protocol=str(protocol),
        from_port=int(str(low)),
        to_port=int(str(high)),
        cidr=str(cidr),
        peer=str(peer or ""),
        description=str(description),
        egress=bool(egress),
    )


class SqlSecurityGroups:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, group: SecurityGroup) -> None:
        checked_group(group)

        def explain(v: Violation) -> TashiError:
            if v.foreign_key:
                return NotFound(f"user {group.user_id} does not exist")
            if v.constraint == "pk_security_groups":
                return AlreadyExists(f"the security group {group.id} exists already")
            return AlreadyExists(f"the security group '{group.name}' already exists")

        row = {
            "id": group.id,
            "user_id": group.user_id,
            "name": group.name,
            "description": group.description,
            "created_at": group.created_at,
        }
        self._db.execute(sa.insert(t_groups), row, explain=explain)

    def get(self, group_id: str) -> SecurityGroup | None:
        query = sa.select(*_GROUP).where(t_groups.c.id == group_id)
        row = self._db.execute(query).one_or_none()
        return None if row is None else _group(row)

    def named(self, user_id: UserId, name: str) -> SecurityGroup | None:
        query = sa.select(*_GROUP).where(t_groups.c.user_id == user_id, t_groups.c.name == name)
        row = self._db.execute(query).one_or_none()
        return None if row is None else _group(row)

    def list(self, user_id: UserId | None = None) -> list[SecurityGroup]:
        query = sa.select(*_GROUP)
        if user_id is not None:
            query = query.where(t_groups.c.user_id == user_id)
        return [_group(r) for r in self._db.execute(query.order_by(t_groups.c.id))]

    def remove(self, group_id: str) -> None:
        if users := self.referencing(group_id):
            raise InvalidState(f"the rules of {', '.join(users)} name {group_id}")
        # its rules and tags go by the cascade (SQLite's foreign keys are on: engine.py)
        done = self._db.execute(sa.delete(t_groups).where(t_groups.c.id == group_id))
        if done.rowcount == 0:
            raise NotFound(f"no security group {group_id}")

    def rules(self, group_ids: Sequence[str] | None = None) -> dict[str, builtins.list[Rule]]:
        query = sa.select(*_RULE)
        if group_ids is not None:
            if not group_ids:
                return {}
            query = query.where(t_rules.c.group_id.in_(list(group_ids)))
        out: dict[str, builtins.list[Rule]] = {}
        for row in self._db.execute(query.order_by(t_rules.c.id)):
            out.setdefault(str(row[0]), []).append(_rule(row))
        return out

    def add_rules(self, group_id: str, rules: Sequence[Rule]) -> None:
        for rule in rules:
            checked_rule(rule)
        if self.get(group_id) is None:
            raise NotFound(f"no security group {group_id}")
        if not rules:
            return
        keys = [rule_key(r) for r in rules]
        held = self._held(group_id, keys)
        for rule, key in zip(rules, keys, strict=True):
            if key in held or keys.count(key) > 1:
                raise AlreadyExists(f'the specified rule "{rule.shown()}" already exists')

        def explain(v: Violation) -> TashiError:
            if v.foreign_key:
                return NotFound(f"no security group {next(r.peer for r in rules if r.peer)}")
            return AlreadyExists(_duplicate(rules, v.value))

        rows = [
            {
                "group_id": group_id,
                "rule_key": key,
                "protocol": r.protocol,
                "from_port": r.from_port,
                "to_port": r.to_port,
                "cidr": r.cidr,
                "peer_id": r.peer or None,
                "description": r.description,
                "egress": r.egress,
            }
            for r, key in zip(rules, keys, strict=True)
        ]
        self._db.execute(sa.insert(t_rules), rows, explain=explain)

    def _held(self, group_id: str, keys: builtins.list[str]) -> set[str]:
        query = sa.select(t_rules.c.rule_key).where(
            t_rules.c.group_id == group_id, t_rules.c.rule_key.in_(keys)
        )
        return {str(k) for k in self._db.execute(query).scalars()}

    def remove_rules(self, group_id: str, rules: Iterable[Rule]) -> int:
        keys = sorted({rule_key(r) for r in rules})
        if not keys:
            return 0
        stmt = sa.delete(t_rules).where(
            t_rules.c.group_id == group_id, t_rules.c.rule_key.in_(keys)
        )
        return int(self._db.execute(stmt).rowcount)

    def referencing(self, group_id: str) -> builtins.list[str]:
        query = (
            sa.select(t_rules.c.group_id)
            .where(t_rules.c.peer_id == group_id, t_rules.c.group_id != group_id)
            .distinct()
            .order_by(t_rules.c.group_id)
        )
        return [str(g) for g in self._db.execute(query).scalars()]


def _duplicate(rules: Sequence[Rule], value: str | None) -> str:
    """AWS's message for the rule a unique violation names (the first one, when the database
    does not say which)."""
    named = next((r for r in rules if value is not None and rule_key(r) in value), rules[0])
    return f'the specified rule "{named.shown()}" already exists'
