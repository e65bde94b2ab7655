"""What ``tashi-cluster rm`` crashes and ``add`` starts: a whole host, or one control-plane piece.

    N            host N: rm crashes the whole machine (node manager, VMs, watchdog; add boots
                 it afresh, empty)
    nm:N         host N's node manager alone: rm SIGKILLs tashi-nm, its VMs and watchdog keep
                 running; add starts it again on the same state directory
    cm           the cluster manager, tashi-cm (add: the same command, config and database)
    scheduler    tashi-scheduler
    prosody      the XMPP server of a cluster started with --xmpp; xmpp its tashi-xmpp
    dnsmasq      every dnsmasq of the cluster; dnsmasq:NET the one of VM network NET
                 (add: the same options, lease and hosts files)

Pure parsing and ordering (no root, no I/O): ``cli.py`` parses its arguments with
``parse_target``; ``cluster.py`` and ``control.py`` act on the result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tashi.domain.errors import InvalidInput


class Kind(enum.Enum):
    """In the order ``add`` starts them: the cluster manager first (everything talks to it),
    then the DHCP/DNS servers, the scheduler (whose hook signals the dnsmasqs), node managers,
    and hosts last (a host's start waits until the cluster manager sees it up)."""

    PROSODY = "prosody"  # before the cluster manager, whose publisher logs in to it
    CM = "cm"
    DNSMASQ = "dnsmasq"
    SCHEDULER = "scheduler"
    XMPP = "xmpp"
    NM = "nm"
    HOST = "host"


ORDER = list(Kind)
SYNTAX = "N, nm:N, cm, scheduler, dnsmasq, dnsmasq:NET, prosody or xmpp"


@dataclass(frozen=True)
class Target:
    kind: Kind
    number: int | None = None  # the host (HOST, NM), the VM network (DNSMASQ), or None

    def __str__(self) -> str:
        if self.kind is Kind.HOST:
            return str(self.number)
        return self.kind.value if self.number is None else f"{self.kind.value}:{self.number}"

    @property
    def sort_key(self) -> tuple[int, int]:
        return ORDER.index(self.kind), self.number or 0


def parse_target(text: str) -> Target:
    """``N``, ``nm:N``, ``cm``, ``scheduler``, ``dnsmasq``, ``dnsmasq:NET`` (see the module doc);
    ``InvalidInput`` saying what is accepted otherwise."""
    word = text.strip().lower()
    name, colon, arg = word.partition(":")
    if word.isdigit():
        return Target(Kind.HOST, _positive(word, text))
    singles = (Kind.CM, Kind.SCHEDULER, Kind.PROSODY, Kind.XMPP)
    if name in {kind.value for kind in singles} and not colon:
        return Target(Kind(name))
    if name == Kind.DNSMASQ.value:
        return Target(Kind.DNSMASQ, _positive(arg, text) if colon else None)
    if name == Kind.NM.value and colon:
        return Target(Kind.NM, _positive(arg, text))
    hint = " (host N's node manager alone is nm:N)" if name in ("nm", "host") else ""
    raise InvalidInput(f"{text!r} is not a host or a piece of the cluster: {SYNTAX}{hint}")


def _positive(digits: str, text: str) -> int:
    if not digits.isdigit() or int(digits) < 1:
        raise InvalidInput(f"{text!r}: a number from 1 up is expected after the name ({SYNTAX})")
    return int(digits)


def in_start_order(targets: list[Target]) -> list[Target]:
    """Without duplicates, in the order ``add`` starts them (``Kind``), stable otherwise."""
    unique = list(dict.fromkeys(targets))
    return sorted(unique, key=lambda t: t.sort_key)
