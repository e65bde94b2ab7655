"""What a host's firewall enforces: the inbound and outbound rules of the security groups its VMs
are in, with every rule's source (or destination) resolved to addresses (pure).

The cluster manager makes one ``Policy`` per host (``resolve``) from the store's groups and
rules and its instances' addresses, and sends it whole to the host's node manager, which
enforces it on the taps of the VMs that are members (``nodemanager/secgroups``). A rule naming a
group (``Rule.peer``) becomes the addresses of that group's members (as ``/32`` ranges), so a
node needs nothing but its policy and its own VMs' hints. ``Policy.version`` is a digest of the
content: equal versions are equal policies, which makes every send idempotent and lets both
sides tell whether the node's copy is current (``docs/adr/0019-security-groups.md``).

Outbound rules (``Policy.egress``) are kept only for the groups that restrict what their members
send: a group with AWS's default outbound rule (everything to everywhere, ``Rule.allows_all``)
is left out, and a VM is held to outbound rules only when every one of its groups is in
``egress`` (its groups' rules add up, so one that lets everything out lets everything out). A
policy without restricted groups is what policies were before outbound rules, version included.
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
    VMs; ``egress``: group -> what its rules let out (``Allow.sources`` then the destinations),
    for those of the groups that do not let everything out."""

    groups: Mapping[str, tuple[Allow, ...]] = field(default_factory=dict)
    egress: Mapping[str, tuple[Allow, ...]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return digest(self)

    def of(self, group_ids: Iterable[str]) -> Policy:
        """The part of this policy for these groups (those it knows)."""
        wanted = sorted(set(group_ids))
        return Policy(
            {g: self.groups[g] for g in wanted if g in self.groups},
            {g: self.egress[g] for g in wanted if g in self.egress},
        )


def digest(policy: Policy) -> str:
    """24 hexadecimal digits of the SHA-256 of the policy's canonical JSON (the inbound part
    alone when no group restricts outbound traffic: the versions of before)."""
    data: object = as_data(policy)
    if policy.egress:
        data = {"groups": data, "egress": as_data(policy, egress=True)}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def as_data(policy: Policy, *, egress: bool = False) -> dict[str, list[list[object]]]:
    """The policy's inbound part (``egress``: its outbound one) as plain JSON data (its
    digest's input, and a node's file)."""
    part = policy.egress if egress else policy.groups
    return {
        g: [[a.protocol, a.from_port, a.to_port, list(a.sources)] for a in allows]
        for g, allows in sorted(part.items())
    }


def from_data(
    data: Mapping[str, Sequence[Sequence[object]]],
    egress: Mapping[str, Sequence[Sequence[object]]] | None = None,
) -> Policy:
    """``as_data``'s inverse, of the inbound and the outbound part (``ValueError`` for data it
    did not write)."""
    return Policy(_parts(data), _parts(egress or {}))


def _parts(data: Mapping[str, Sequence[Sequence[object]]]) -> dict[str, tuple[Allow, ...]]:
    groups: dict[str, tuple[Allow, ...]] = {}
    for group, allows in data.items():
        out = []
        for proto, low, high, sources in allows:
            if not isinstance(sources, list):
                raise ValueError(f"sources of a rule of {group} are not a list")
            out.append(Allow(str(proto), int(str(low)), int(str(high)), tuple(map(str, sources))))
        groups[str(group)] = tuple(out)
    return groups


def resolve(
    rules: Mapping[str, Sequence[Rule]],
    members: Mapping[str, Iterable[str]],
    wanted: Iterable[str],
) -> Policy:
    """The policy of the ``wanted`` groups (by ``key``): ``rules`` (inbound and outbound) by
    group key, every group that exists (one without rules: empty), ``members`` the addresses of
    each group's member instances by group id (a rule's ``peer``). A wanted group with no
    inbound rules (or unknown) is in the policy with none: its members let nothing in but
    replies. One with no outbound rules lets nothing out but replies; one whose outbound rules
    let everything out, or an unknown one, is not in ``egress`` (outbound is open, as before
    outbound rules)."""
    inbound: dict[str, tuple[Allow, ...]] = {}
    outbound: dict[str, tuple[Allow, ...]] = {}
    for group in sorted(set(wanted)):
        held = rules.get(group, ())
        inbound[group] = _merged([r for r in held if not r.egress], members)
        out = [r for r in held if r.egress]
        if not any(r.allows_all for r in out) and group in rules:
            outbound[group] = _merged(out, members)
    return Policy(inbound, outbound)


def _merged(rules: Sequence[Rule], members: Mapping[str, Iterable[str]]) -> tuple[Allow, ...]:
    """Rules with their peers resolved, one ``Allow`` per protocol and ports."""
    merged: dict[tuple[str, int, int], set[str]] = {}
    for r in rules:
        sources = {r.cidr} if r.cidr else {f"{a}/32" for a in members.get(r.peer, ())}
        merged.setdefault((r.protocol, r.from_port, r.to_port), set()).update(sources)
    return tuple(
        Allow(proto, low, high, tuple(sorted(sources, key=_network_order)))
        for (proto, low, high), sources in sorted(merged.items())
    )


def _network_order(cidr: str) -> tuple[int, ...]:
    address, _, length = cidr.partition("/")
    return (*(int(p) for p in address.split(".")), int(length or 32))
