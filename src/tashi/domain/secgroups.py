"""Security groups (EC2's): a user's named sets of inbound and outbound rules, and which
instances they guard.

A group belongs to one user; its name is unique among that user's, and every user has one named
``default`` (made on first use, never deleted), which lets in everything its own members send.
An inbound rule (``Rule``) lets in one protocol (and a port range, or an ICMP type and code) from
one source: an IPv4 range (``cidr``) or the members of one of the user's groups (``peer``); an
outbound rule (``Rule.egress``) lets out the same to one destination, given the same way. Rules
only ever allow; what no rule of any of a VM's groups allows is dropped, except replies to the
VM's own connections, and its replies to what came in (``docs/adr/0019-security-groups.md``).
A new group, ``default`` too, has one outbound rule, ``DEFAULT_EGRESS``: everything anywhere,
as on AWS, so outbound traffic is filtered only once a user revokes it.

An instance's groups are kept on it as hints, like the rest of its launch
(``domain/launches.py``): ``GROUPS_HINT`` (set by RunInstances: ids and names, JSON) or, for an
instance made with Tashi's own ``createVm``, the hint ``securityGroups`` (ids by commas), which
counts only for groups of the instance's owner. ``groups_of`` reads either.

The store keeps groups, rules and tags (``storage/secgroups.py``); what a host enforces, the
rules with their peers resolved to addresses, is ``domain/firewall.py``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound
from tashi.domain.ids import UserId

ID_PREFIX = "sg-"
ID_MAX = 32  # characters of a group's id as stored ("sg-" and 17 hexadecimal digits: 20)
NAME_MAX = 255
DESCRIPTION_MAX = 255
CIDR_MAX = 18  # "255.255.255.255/32"
MAX_RULES = 60  # inbound rules a group holds, and outbound ones, as AWS's default quotas
MAX_GROUPS_PER_INSTANCE = 5  # as AWS's default quota
MAX_GROUPS_PER_USER = 2500  # as AWS's default quota per region
DEFAULT_NAME = "default"
DEFAULT_DESCRIPTION = "default VPC security group"
GROUPS_HINT = "__ec2.groups"  # what RunInstances recorded: [[id, name], ...] as JSON
TASHI_HINT = "securityGroups"  # a createVm instance's groups: ids by commas
ALL = "-1"  # the protocol of a rule that allows every protocol (and port)
ANY = -1  # a port (or ICMP type, code) bound that is not given: all of them

_ID = re.compile(r"sg-[0-9a-f]{17}")
#: the characters AWS allows in a VPC group's name and description
_TEXT = re.compile(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*")
_PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp"}
_PROTOCOLS |= {"-1": ALL, "all": ALL}
_PORTED = ("tcp", "udp")


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    id: str  # "sg-" and 17 hexadecimal digits
    user_id: UserId
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: ``protocol`` (``tcp``, ``udp``, ``icmp``, ``-1`` for all, or another IP
    protocol's number) from ``cidr`` or from the members of group ``peer`` (exactly one of the
    two is set, the other is empty); an ``egress`` rule's ``cidr`` or ``peer`` is where the
    traffic goes to instead. For tcp and udp the ports are a range (the destination's, both
    ways); for icmp they are the type and code (``ANY``: all); for the others they are ``ANY``."""

    protocol: str
    from_port: int
    to_port: int
    cidr: str = ""
    peer: str = ""
    description: str = ""
    egress: bool = False

    @property
    def key(self) -> tuple[str | int, ...]:
        """What makes a rule itself (two rules with one key are one rule: a duplicate). An
        inbound rule's is the five parts it was before outbound rules existed (its ``rule_id``
        and stored key stay what they were)."""
        five = (self.protocol, self.from_port, self.to_port, self.cidr, self.peer)
        return (*five, "egress") if self.egress else five

    @property
    def allows_all(self) -> bool:
        """Every protocol, port and address: AWS's default outbound rule."""
        return self.protocol == ALL and self.cidr == "0.0.0.0/0"

    def shown(self) -> str:
        """The rule as AWS's error messages tell it."""
        peer = self.cidr or self.peer
        proto = "ALL" if self.protocol == ALL else self.protocol.upper()
        return f"peer: {peer}, {proto}, from port: {self.from_port}, to port: {self.to_port}, ALLOW"


#: the outbound rule a new group has, as on AWS: everything to everywhere
DEFAULT_EGRESS = Rule(ALL, ANY, ANY, cidr="0.0.0.0/0", egress=True)


class RulesLimitExceeded(InvalidInput):
    """A group would hold more than ``MAX_RULES`` rules."""


class GroupLimitExceeded(InvalidInput):
    """A user would have more than ``MAX_GROUPS_PER_USER`` groups."""


class ReservedName(InvalidInput):
    """A new group may not be named ``default``: every user has that one already."""


class UnknownGroup(NotFound):
    """A group that does not exist, or not for the caller; ``ref`` is its id or name as given."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"The security group '{ref}' does not exist")
        self.ref = ref


class DuplicateGroup(AlreadyExists):
    """The caller has a group of that name already."""


class DuplicateRule(AlreadyExists):
    """A group holds the rule already (or it was given twice)."""


class UnknownRule(NotFound):
    """A rule to revoke that the group does not hold."""


class GroupInUse(InvalidState):
    """A group instances are members of, or other groups' rules name, cannot be deleted."""


class CannotDelete(InvalidState):
    """A user's ``default`` group cannot be deleted."""


def rule_id(group_id: str, rule: Rule) -> str:
    """A rule's EC2 id (``sgr-`` and 17 hexadecimal digits), the same for as long as the rule
    is the group's: a digest of the group and the rule's key."""
    text = "|".join([group_id, *(str(part) for part in rule.key)])
    return "sgr-" + hashlib.sha256(text.encode()).hexdigest()[:17]


def new_id() -> str:
    return ID_PREFIX + secrets.token_hex(9)[:17]


def is_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def name(text: str) -> str:
    """``text`` if it can name a new group: 1 to 255 of AWS's characters, not ``sg-…``."""
    if not 1 <= len(text) <= NAME_MAX or not _TEXT.fullmatch(text):
        raise InvalidInput(
            f"a security group's name has 1 to {NAME_MAX} characters of a-z, A-Z, 0-9, spaces"
            " and ._-:/()#,@[]+=&;{}!$*"
        )
    if text.lower().startswith(ID_PREFIX):
        raise InvalidInput("a security group's name cannot start with 'sg-'")
    return text


def description(text: str) -> str:
    if len(text) > DESCRIPTION_MAX or not _TEXT.fullmatch(text):
        raise InvalidInput(
            f"a description has at most {DESCRIPTION_MAX} characters of a-z, A-Z, 0-9, spaces"
            " and ._-:/()#,@[]+=&;{}!$*"
        )
    return text


def protocol(text: str) -> str:
    """The canonical name of an IP protocol as EC2 takes it (a name or a number)."""
    lowered = text.strip().lower()
    if lowered in _PROTOCOLS:
        return _PROTOCOLS[lowered]
    if lowered.isdigit() and 0 <= int(lowered) <= 255:
        return str(int(lowered))
    raise InvalidInput(f"invalid IP protocol {text!r}: tcp, udp, icmp, -1 or a number 0-255")


def cidr(text: str) -> str:
    """An IPv4 range in its canonical form; a range with host bits set is refused, as AWS."""
    try:
        net = ipaddress.IPv4Network(text.strip(), strict=True)
    except ValueError:
        raise InvalidInput(f"CIDR block {text} is malformed") from None
    return str(net)


def rule(
    proto: str,
    from_port: int | None,
    to_port: int | None,
    *,
    source_cidr: str | None = None,
    peer: str | None = None,
    text: str = "",
    egress: bool = False,
) -> Rule:
    """A checked rule (``InvalidInput`` naming what is wrong); ``egress``: an outbound one,
    ``source_cidr`` or ``peer`` then its destination."""
    if (source_cidr is None) == (peer is None):
        raise InvalidInput("a rule has one source: a CIDR range or a security group")
    canonical = protocol(proto)
    low, high = _ports(canonical, from_port, to_port)
    return Rule(
        protocol=canonical,
        from_port=low,
        to_port=high,
        cidr=cidr(source_cidr) if source_cidr is not None else "",
        peer=peer or "",
        description=description(text),
        egress=egress,
    )


def _ports(proto: str, low: int | None, high: int | None) -> tuple[int, int]:
    if proto in _PORTED:
        if low is None or high is None:
            raise InvalidInput(f"a {proto} rule needs FromPort and ToPort")
        if not (0 <= low <= 65535 and 0 <= high <= 65535) or low > high:
            raise InvalidInput(f"invalid {proto} port range {low}-{high}: 0-65535, from <= to")
        return low, high
    if proto == "icmp":
        kind = ANY if low is None else low
        code = ANY if high is None else high
        if not (-1 <= kind <= 255 and -1 <= code <= 255) or (kind == ANY and code != ANY):
            raise InvalidInput(f"invalid ICMP type {kind} and code {code}: -1 or 0-255 each")
        return kind, code
    return ANY, ANY  # every port of the protocol, as AWS ignores ports there


def launched_in(groups: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The hint that records the groups (id, name) an instance was launched in."""
    return {GROUPS_HINT: json.dumps([list(g) for g in groups], separators=(",", ":"))}


def named_groups_of(hints: Mapping[str, str]) -> list[tuple[str, str]]:
    """The groups of an instance as (id, name), in the order given; a group named by the
    ``securityGroups`` hint only has an empty name here."""
    recorded = hints.get(GROUPS_HINT)
    if recorded is not None:
        try:
            pairs = json.loads(recorded)
            return [(str(i), str(n)) for i, n in pairs]
        except (ValueError, TypeError):
            return []
    ids = [g.strip() for g in hints.get(TASHI_HINT, "").split(",") if g.strip()]
    return [(g, "") for g in dict.fromkeys(ids)]


def groups_of(hints: Mapping[str, str]) -> tuple[str, ...]:
    """The ids of an instance's groups; empty: it is in none, nothing filters its traffic."""
    return tuple(i for i, _ in named_groups_of(hints))
