"""``SecurityGroupService``: a user's security groups, made, listed, given and taken rules, and
deleted; and the groups a launch puts its instances in.

A group is its owner's alone: every method acts on the caller's own groups (an administrator's
included, as on EC2, where groups belong to an account), and another user's is as unknown as one
that does not exist (``UnknownGroup``). Each user has a ``default`` group, made on first use
(``default``: any method), whose one inbound rule lets in all traffic from its own members; it
cannot be deleted. Every new group has AWS's default outbound rule (``sg.DEFAULT_EGRESS``). A rule
may name one of the caller's groups as its source or destination (``Rule.peer``); ``authorize``
and ``revoke`` take inbound and outbound rules alike (``Rule.egress``).

A change of rules is told to ``FirewallSync`` (``sync.py``), which sends the hosts whose VMs it
concerns their new policy; which instances are members is on the instances themselves
(``secgroups.GROUPS_HINT``), so their comings and goings reach it as their state changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tashi.clustermanager.database import Database
from tashi.domain import secgroups as sg
from tashi.domain import tags
from tashi.domain.clock import Clock
from tashi.domain.errors import AlreadyExists, InvalidInput
from tashi.domain.models import Principal
from tashi.domain.secgroups import (
    CannotDelete,
    DuplicateGroup,
    DuplicateRule,
    GroupInUse,
    GroupLimitExceeded,
    ReservedName,
    Rule,
    RulesLimitExceeded,
    SecurityGroup,
    UnknownGroup,
    UnknownRule,
)
from tashi.storage.contract import InstanceFilter, Transaction


class RulesChanged(Protocol):
    def rules_changed(self) -> None:
        """Some group's rules changed (or a group went): the hosts' policies may differ."""


@dataclass(frozen=True, slots=True)
class Listed:
    group: SecurityGroup
    rules: tuple[Rule, ...]
    tags: dict[str, str]


class SecurityGroupService:
    def __init__(self, db: Database, clock: Clock, changed: RulesChanged | None = None) -> None:
        self._db = db
        self._clock = clock
        self._changed = changed

    # --- groups -----------------------------------------------------------------------

    async def default(self, caller: Principal) -> SecurityGroup:
        """The caller's ``default`` group, made now if they have none yet."""
        found = await self._db.read(
            lambda tx: tx.security_groups.named(caller.user_id, sg.DEFAULT_NAME)
        )
        if found is not None:
            return found
        made = self._record(caller, sg.DEFAULT_NAME, sg.DEFAULT_DESCRIPTION)

        def add(tx: Transaction) -> SecurityGroup:
            have = tx.security_groups.named(caller.user_id, sg.DEFAULT_NAME)
            if have is not None:  # made meanwhile by another request
                return have
            tx.security_groups.add(made)
            members = Rule(sg.ALL, sg.ANY, sg.ANY, peer=made.id)
            tx.security_groups.add_rules(made.id, [members, sg.DEFAULT_EGRESS])
            return made

        try:
            return await self._db.write(add)
        except AlreadyExists:  # a concurrent first use won the name: theirs is the one
            return await self.default(caller)

    async def create(
        self,
        caller: Principal,
        name: str,
        description: str,
        with_tags: Mapping[str, str] | None = None,
    ) -> Listed:
        """A new group with no inbound rules and AWS's default outbound one (``DuplicateGroup``,
        ``ReservedName``, ``InvalidInput``)."""
        sg.name(name)
        sg.description(description)
        wanted = tags.checked(with_tags or {})
        if name == sg.DEFAULT_NAME:
            raise ReservedName(f"Cannot use reserved security group name: {name}")
        await self.default(caller)
        group = self._record(caller, name, description)

        def add(tx: Transaction) -> None:
            if len(tx.security_groups.list(caller.user_id)) >= sg.MAX_GROUPS_PER_USER:
                raise GroupLimitExceeded(
                    f"a user has at most {sg.MAX_GROUPS_PER_USER} security groups"
                )
            if tx.security_groups.named(caller.user_id, name) is not None:
                raise DuplicateGroup(f"The security group '{name}' already exists")
            tx.security_groups.add(group)
            tx.security_groups.add_rules(group.id, [sg.DEFAULT_EGRESS])
            if wanted:
                tx.security_group_tags.put(group.id, wanted)

        try:
            await self._db.write(add)
        except DuplicateGroup:
            raise
        except AlreadyExists:  # the name, taken meanwhile
            raise DuplicateGroup(f"The security group '{name}' already exists") from None
        return Listed(group, (sg.DEFAULT_EGRESS,), wanted)

    async def describe(self, caller: Principal) -> list[Listed]:
        """The caller's groups with their rules and tags, by id (``default`` included)."""
        await self.default(caller)

        def read(tx: Transaction) -> list[Listed]:
            groups = tx.security_groups.list(caller.user_id)
            ids = [g.id for g in groups]
            rules, tagged = tx.security_groups.rules(ids), tx.security_group_tags.of(ids)
            return [Listed(g, tuple(rules.get(g.id, ())), tagged.get(g.id, {})) for g in groups]

        return await self._db.read(read)

    async def find(self, caller: Principal, ref: str) -> SecurityGroup:
        """The caller's group of id (``sg-…``) or name ``ref``; ``UnknownGroup``."""
        if ref == sg.DEFAULT_NAME:
            return await self.default(caller)
        found = await self._db.read(lambda tx: _mine(tx, caller, ref))
        if found is None:
            raise UnknownGroup(ref)
        return found

    async def delete(self, caller: Principal, ref: str) -> SecurityGroup:
        """Delete the caller's group (id or name) with its rules and tags: ``CannotDelete``
        for ``default``, ``GroupInUse`` while an instance is a member or another group's rule
        names it."""
        group = await self.find(caller, ref)
        if group.name == sg.DEFAULT_NAME:
            raise CannotDelete(f"the security group '{group.id}' cannot be deleted by a user")

        def remove(tx: Transaction) -> None:
            users = [
                i.id
                for i in tx.instances.find(InstanceFilter(user_id=caller.user_id))
                if group.id in sg.groups_of(i.hints)
            ]
            if users:
                raise GroupInUse(f"resource {group.id} has a dependent object")
            if tx.security_groups.referencing(group.id):
                raise GroupInUse(f"resource {group.id} has a dependent object")
            tx.security_groups.remove(group.id)

        await self._db.write(remove)
        self._tell()
        return group

    # --- rules ------------------------------------------------------------------------

    async def authorize(self, caller: Principal, ref: str, rules: Sequence[Rule]) -> list[Rule]:
        """Add rules to the caller's group, all or none: ``DuplicateRule`` for a rule it holds
        (or given twice), ``UnknownGroup`` for a peer that is not the caller's,
        ``RulesLimitExceeded`` past ``MAX_RULES`` of a direction."""
        group = await self.find(caller, ref)

        def add(tx: Transaction) -> None:
            for peer in sorted({r.peer for r in rules if r.peer}):
                if _mine(tx, caller, peer) is None:
                    raise UnknownGroup(peer)
            held = tx.security_groups.rules([group.id]).get(group.id, [])
            keys = {r.key: r.egress for r in held}
            for r in rules:
                if r.key in keys:
                    raise DuplicateRule(f'the specified rule "{r.shown()}" already exists')
                keys[r.key] = r.egress
            for egress, way in ((False, "inbound"), (True, "outbound")):
                if sum(e is egress for e in keys.values()) > sg.MAX_RULES:
                    raise RulesLimitExceeded(
                        f"a security group holds at most {sg.MAX_RULES} {way} rules"
                    )
            tx.security_groups.add_rules(group.id, rules)

        await self._db.write(add)
        self._tell()
        return list(rules)

    async def revoke(self, caller: Principal, ref: str, rules: Sequence[Rule]) -> None:
        """Remove rules from the caller's group, all or none: ``UnknownRule`` for a rule it
        does not hold (by key: a description does not count)."""
        group = await self.find(caller, ref)

        def remove(tx: Transaction) -> None:
            held = {r.key for r in tx.security_groups.rules([group.id]).get(group.id, [])}
            for r in rules:
                if r.key not in held:
                    raise UnknownRule("The specified rule does not exist in this security group.")
            tx.security_groups.remove_rules(group.id, rules)

        await self._db.write(remove)
        self._tell()

    # --- launches ---------------------------------------------------------------------

    async def for_launch(
        self, caller: Principal, ids: Iterable[str] = (), names: Iterable[str] = ()
    ) -> list[SecurityGroup]:
        """The caller's groups a launch names (by id or name), ``default`` if it names none:
        ``UnknownGroup`` naming the first that is not the caller's; at most
        ``MAX_GROUPS_PER_INSTANCE`` (``InvalidInput``)."""
        refs = [*dict.fromkeys([*ids, *names])]
        if not refs:
            return [await self.default(caller)]
        found = {}
        for ref in refs:
            group = await self.find(caller, ref)
            found[group.id] = group
        if len(found) > sg.MAX_GROUPS_PER_INSTANCE:
            raise InvalidInput(
                f"an instance is in at most {sg.MAX_GROUPS_PER_INSTANCE} security groups"
            )
        return list(found.values())

    def _record(self, caller: Principal, name: str, description: str) -> SecurityGroup:
        return SecurityGroup(
            id=sg.new_id(),
            user_id=caller.user_id,
            name=name,
            description=description,
            created_at=self._clock.now(),
        )

    def _tell(self) -> None:
        if self._changed is not None:
            self._changed.rules_changed()


def _mine(tx: Transaction, caller: Principal, ref: str) -> SecurityGroup | None:
    found = (
        tx.security_groups.get(ref)
        if sg.is_id(ref)
        else tx.security_groups.named(caller.user_id, ref)
    )
    return found if found is not None and found.user_id == caller.user_id else None
