"""The node contract's security-group policy: ``PUT /v1/firewall`` (``paths.FIREWALL``), what the
cluster manager sends a node manager whenever the policy of its VMs' groups changes, and ``GET``,
what the node enforces now (``docs/adr/0019-security-groups.md``).

The body is the whole ``domain.firewall.Policy`` of the host (every group its VMs are in, by
owner and id, each rule's sources resolved to IPv4 ranges; ``egress``, the outbound rules of
the groups that restrict them, absent or empty when none does) with its version; the answer is the
version the node enforces once it has taken it. Kept beside ``schemas.py`` and ``convert.py``
as their part for this one call, with its wire models and conversions together.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from tashi.domain.firewall import Allow, Policy
from tashi.domain.secgroups import CIDR_MAX

MAX_GROUPS = 10_000  # groups of one host's VMs (a host runs at most a few thousand VMs)
MAX_RULES = 256  # rules of one group on the wire (merged by protocol and ports: <= 60)
MAX_SOURCES = 65_536  # addresses a rule lets in (a peer group's members)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllowWire(_Model):
    protocol: str = Field(max_length=8, description="tcp, udp, icmp, -1 (all) or a number")
    # camelCase, as the rest of the node contract (``schemas.py``)
    fromPort: int = Field(ge=-1, le=65535, description="first port, or ICMP type")  # noqa: N815
    toPort: int = Field(ge=-1, le=65535, description="last port, or ICMP code")  # noqa: N815
    sources: list[str] = Field(max_length=MAX_SOURCES, description="IPv4 ranges (CIDR) it lets in")


class FirewallIn(_Model):
    version: str = Field(max_length=64, description="``Policy.version`` of this policy")
    groups: dict[str, list[AllowWire]] = Field(
        description="group (``<owner id>:<sg-id>``) -> what its rules let in"
    )
    egress: dict[str, list[AllowWire]] = Field(
        default_factory=dict,
        description="group -> what its rules let out (``sources``: the destinations), for the"
        " groups that do not let everything out",
    )


class FirewallOut(_Model):
    version: str = Field(description="the version of the policy the node enforces now")


def policy_wire(policy: Policy) -> FirewallIn:
    return FirewallIn(
        version=policy.version, groups=_wire(policy.groups), egress=_wire(policy.egress)
    )


def _wire(part: Mapping[str, tuple[Allow, ...]]) -> dict[str, list[AllowWire]]:
    return {
        group: [
            AllowWire(
                protocol=a.protocol, fromPort=a.from_port, toPort=a.to_port, sources=list(a.sources)
            )
            for a in allows
        ]
        for group, allows in part.items()
    }


def policy(wire: FirewallIn) -> Policy:
    """The policy a node was sent (its version is recomputed from the content: a node never
    takes a version on trust). ``ValueError`` for a source longer than a CIDR range can be."""
    return Policy(_part(wire.groups), _part(wire.egress))


def _part(part: Mapping[str, list[AllowWire]]) -> dict[str, tuple[Allow, ...]]:
    for allows in part.values():
        for a in allows:
            if any(len(s) > CIDR_MAX for s in a.sources):
                raise ValueError("a source is not an IPv4 range")
    return {
        group: tuple(Allow(a.protocol, a.fromPort, a.toPort, tuple(a.sources)) for a in allows)
        for group, allows in part.items()
    }
