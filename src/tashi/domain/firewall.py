"""What a host's firewall enforces: the inbound rules of the security groups its VMs are in, with
every rule's source resolved to addresses (pure).

The cluster manager makes one ``Policy`` per host (``resolve``) from the store's groups and
rules and its instances' addresses, and sends it whole to the host's node manager, which
enforces it on the taps of the VMs that are members (``nodemanager/secgroups``). A rule naming a
group (``Rule.peer``) becomes the addresses of that group's members (as ``/32`` ranges), so a
node needs nothing but its policy and its own VMs' hints. ``Policy.version`` is a digest of the
content: equal versions are equal policies, which makes every send idempotent and lets both
sides tell whether the node's copy is current (``docs/adr/0019-security-groups.md``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tashi.domain.secgroups import Rule


def key(user_id: int, group_id: str) -> str:
    """How a policy names a group: with its owner, so that an instance naming another user's
    group (a ``securityGroups`` hint can) finds no rules under it, only closed doors."""
    return f"{int(user_id)}:{group_id}"


@dataclass(frozen=True, slots=True)
class Allow:
    """Traffic one rule lets in: ``protocol`` and ports as ``secgroups.Rule``'s, from any of
    ``sources`` (IPv4 ranges, sorted; empty: from nowhere, as a rule naming an empty group)."""

    protocol: str
    from_port: int
    to_port: int
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """Group (``key``: owner and id) -> what its rules let in, for the groups of one host's
    VMs."""

    groups: Mapping[str, tuple[Allow, ...]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return digest(self)

    def of(self, group_ids: Iterable[str]) -> Policy:
        """The part of this policy for these groups (those it knows)."""
        return Policy({g: self.groups[g] for g in sorted(set(group_ids)) if g in self.groups})


def digest(policy: Policy) -> str:
    """24 hexadecimal digits of the SHA-256 of the policy's canonical JSON."""
    text = json.dumps(as_data(policy), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def as_data(policy: Policy) -> dict[str, list[list[object]]]:
    """The policy as plain JSON data (its digest's input, and a node's file)."""
    return {
        g: [[a.protocol, a.from_port, a.to_port, list(a.sources)] for a in allows]
        for g, allows in sorted(policy.groups.items())
    }


def from_data(data: Mapping[str, Sequence[Sequence[object]]]) -> Policy:
    """``as_data``'s inverse (``ValueError`` for data it did not write)."""
    groups: dict[str, tuple[Allow, ...]] = {}
    for group, allows in data.items():
        out = []
        for proto, low, high, sources in allows:
            if not isinstance(sources, list):
                raise ValueError(f"sources of a rule of {group} are not a list")
            out.append(Allow(str(proto), int(str(low)), int(str(high)), tuple(map(str, sources))))
        groups[str(group)] = tuple(out)
    return Policy(groups)


def resolve(
    rules: Mapping[str, Sequence[Rule]],
    members: Mapping[str, Iterable[str]],
    wanted: Iterable[str],
) -> Policy:
    """The policy of the ``wanted`` groups (by ``key``): ``rules`` by group key, ``members``
    the addresses of each group's member instances by group id (a rule's ``peer``). A wanted
    group with no rules (or unknown) is in the policy with none: its members let nothing in
    but replies."""
    out: dict[str, tuple[Allow, ...]] = {}
    for group in sorted(set(wanted)):
        merged: dict[tuple[str, int, int], set[str]] = {}
        for r in rules.get(group, ()):
            sources = {r.cidr} if r.cidr else {f"{a}/32" for a in members.get(r.peer, ())}
            merged.setdefault((r.protocol, r.from_port, r.to_port), set()).update(sources)
        out[group] = tuple(
            Allow(proto, low, high, tuple(sorted(sources, key=_network_order)))
            for (proto, low, high), sources in sorted(merged.items())
        )
    return Policy(out)


def _network_order(cidr: str) -> tuple[int, ...]:
    address, _, length = cidr.partition("/")
    return (*(int(p) for p in address.split(".")), int(length or 32))
