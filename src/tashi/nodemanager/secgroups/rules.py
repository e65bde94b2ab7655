"""The nftables text that enforces security groups on the VMs' taps (pure).

Two tables in the node manager's network namespace, beside ``tashi-metadata``
(``nodemanager/metadata/rules.py``) and made the same way:

* ``netdev tashi-secgroups``: for each guarded NIC (``Port``: a tap of a VM that is in groups)
  a base chain on the tap's **egress** hook, ``to-<instance>-<nic>``: every frame the tap is
  about to hand the guest, whether the bridge forwards it from another VM, from a VXLAN tunnel
  or from the host itself, and the metadata service's answers, which its chains forward into
  the tap carrying their NIC's mark (``metadata.rules.MARK_BASE``): they pass this hook too.
  Policy drop; accepted are replies (below), metadata answers, ARP, DHCP offers and IPv6
  neighbour discovery, and what a rule of one of the VM's groups lets in: one regular
  chain per group, ``g-<owner>-<sg id>``, shared by the group's members on this host, which the
  port's chain jumps to. And a base chain on the tap's **ingress** hook, ``from-<instance>-<nic>``
  (after the metadata chain, which takes 169.254.169.254 first): frames from the guest must
  carry its MAC, and, once its address is known, its address (ARP included); no DHCP server in a
  guest. So a group named as a rule's source lets in its members' addresses and nobody else's.
  Then what the guest sends out: its DHCP requests pass, and the chain jumps to one chain per
  group, ``e-<owner>-<sg id>``, holding what its outbound rules let out (``accept``), or a
  lone ``accept`` for a group that lets everything out (``Policy.egress`` does not restrict it),
  none for a group the policy does not know yet (a VM started before its policy came: closed);
  IPv4 none of them accepted is marked with ``EGRESS_BIT`` (IPv6 but neighbour discovery is
  dropped), to be dropped below unless it is part of a connection made towards the guest.
* ``inet tashi-secgroups``: the *replies*. Conntrack runs on bridged IPv4 because the namespace
  passes bridged frames to the IP hooks (``net.bridge.bridge-nf-call-iptables``, set by the
  plumbing); a chain on the forward hook (bridged frames) and one on the output hook (the host's
  own) set ``REPLY_BIT`` of the packet mark on every packet of an established or related
  connection leaving through a bridge. A netdev chain cannot read conntrack itself (the kernel
  refuses ``ct`` there), so the mark carries the verdict to the tap's egress chain. The same
  chains (and one on the input hook, the host's own) drop a packet marked with ``EGRESS_BIT``
  unless it belongs to an established or related connection: a guest's replies to what its
  inbound rules let in go out whatever its outbound rules say, as on AWS.

Everything is replaced in one transaction per change (``reset``, ``add_port``, ``remove_port``,
``update``), so no frame ever meets half a policy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tashi.domain.firewall import Allow, Policy
from tashi.domain.secgroups import ALL, ANY
from tashi.nodemanager.metadata.rules import MARK_BASE

TABLE = "tashi-secgroups"
REPLY_BIT = 0x80000000  # the packet mark's bit for "a reply": clear of the metadata's marks
EGRESS_BIT = 0x00800000  # "no outbound rule let it out": clear of the metadata's and REPLY_BIT
EGRESS_PRIORITY = 0
INGRESS_PRIORITY = -400  # after the metadata's steering (-500), which takes its own first
TRACK_PRIORITY = -150  # after conntrack (-200), before the usual filter chains (0)
_KEY = re.compile(r"(\d+):(sg-[0-9a-f]{17})")
_ND = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert"
_ND_OUT = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit"  # what a guest sends


@dataclass(frozen=True, slots=True)
class Port:
    """One NIC of a VM that is in security groups, as the node enforces them on its tap."""

    instance_id: int
    nic: int
    tap: str
    mac: str  # the guest's
    address: str | None  # the guest's IPv4 address, when the cluster manager gave it one
    groups: tuple[str, ...]  # policy keys (``firewall.key``) of the VM's groups

    @property
    def to_chain(self) -> str:
        return f"to-{self.instance_id}-{self.nic}"

    @property
    def from_chain(self) -> str:
        return f"from-{self.instance_id}-{self.nic}"


def group_chain(key: str, *, egress: bool = False) -> str | None:
    """The chain of a group's inbound rules (``egress``: outbound ones) by its policy key,
    ``None`` for a key that is not one."""
    found = _KEY.fullmatch(key)
    return f"{'e' if egress else 'g'}-{found[1]}-{found[2]}" if found else None


def _quoted(name: str) -> str:
    if not name or len(name) > 15 or any(c in name for c in '"\\\n; {}'):
        raise ValueError(f"{name!r} cannot be named in an nftables rule")
    return f'"{name}"'


def _mac(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", text):
        raise ValueError(f"{text!r} is not a MAC address")
    return text.lower()


def _address(text: str) -> str:
    return str(ipaddress.IPv4Address(text))


def tables() -> str:
    """Both tables, with the reply marking and no port (``add``: made if missing)."""
    where = f"inet {TABLE}"
    mark = f"meta mark set meta mark | {REPLY_BIT:#x}"
    unasked = f"meta mark and {EGRESS_BIT:#x} == {EGRESS_BIT:#x} ct state new,invalid,untracked"
    lines = [f"add table netdev {TABLE}", f"add table {where}"]
    for chain, hook in (
        ("track_forward", "forward"),
        ("track_output", "output"),
        ("guard_input", "input"),
    ):
        lines += [
            f"add chain {where} {chain} {{ type filter hook {hook}"
            f" priority {TRACK_PRIORITY}; policy accept; }}",
            f"flush chain {where} {chain}",
        ]
        if hook != "output":  # what a guest sent, bridged or to the host itself
            lines.append(f"add rule {where} {chain} {unasked} drop")
        if hook != "input":
            replies = 'meta oifkind "bridge" ct state established,related'
            lines.append(f"add rule {where} {chain} {replies} {mark}")
    return "\n".join(lines)


def reset(policy: Policy, ports: Sequence[Port]) -> str:
    """One transaction: both tables made anew with exactly ``ports`` (a start, a restart)."""
    lines = [
        f"add table netdev {TABLE}",
        f"delete table netdev {TABLE}",
        f"add table inet {TABLE}",
        f"delete table inet {TABLE}",
        tables(),
        groups(policy, needed(policy, ports), ()),
    ]
    lines += [_port(p) for p in ports]
    return "\n".join(line for line in lines if line)


def needed(policy: Policy, ports: Iterable[Port]) -> set[str]:
    """The group chains the ports jump to and the policy fills (keys that name a group)."""
    keys = set(policy.groups) | {g for p in ports for g in p.groups}
    return {k for k in keys if group_chain(k) is not None}


def groups(policy: Policy, keys: Iterable[str], gone: Iterable[str]) -> str:
    """The chains of the groups ``keys`` (made if missing, filled anew from ``policy``: none,
    in or out, for a group it does not know) and those of ``gone`` deleted (no port may jump
    to them)."""
    where = f"netdev {TABLE}"
    lines: list[str] = []
    for key in sorted(keys):
        chain, out = group_chain(key), group_chain(key, egress=True)
        if chain is None or out is None:
            continue
        lines += [f"add chain {where} {chain}", f"flush chain {where} {chain}"]
        lines += [
            f"add rule {where} {chain} {m} accept" for m in allows(policy.groups.get(key, ()))
        ]
        lines += [f"add chain {where} {out}", f"flush chain {where} {out}"]
        if key in policy.egress:
            sent = allows(policy.egress[key], egress=True)
            lines += [f"add rule {where} {out} {m} accept" for m in sent]
        elif key in policy.groups:
            lines.append(f"add rule {where} {out} accept")  # it lets everything out
        # a group the policy does not know yet lets nothing out (nor in) but replies
    for key in sorted(gone):
        for name in (group_chain(key), group_chain(key, egress=True)):
            if name is not None:
                lines += [f"flush chain {where} {name}", f"delete chain {where} {name}"]
    return "\n".join(lines)


def add_port(policy: Policy, port: Port, new_groups: Iterable[str]) -> str:
    """One transaction: ``port``'s chains, and the chains of ``new_groups`` (its groups this
    host had no chain for yet)."""
    return "\n".join(x for x in (groups(policy, new_groups, ()), _port(port)) if x)


def remove_port(port: Port, gone_groups: Iterable[str]) -> str:
    """One transaction: what ``add_port`` made for ``port`` gone, and the chains of
    ``gone_groups`` (no other port here is in them, and the policy has no rules for them)."""
    where = f"netdev {TABLE}"
    lines = []
    for chain in (port.to_chain, port.from_chain):
        lines += [f"flush chain {where} {chain}", f"delete chain {where} {chain}"]
    return "\n".join(x for x in ("\n".join(lines), groups(Policy(), (), gone_groups)) if x)


def update(policy: Policy, keys: Iterable[str], gone: Iterable[str]) -> str:
    """One transaction: the group chains ``keys`` filled from the new ``policy``, ``gone``
    deleted."""
    return groups(policy, keys, gone)


def _port(port: Port) -> str:
    where = f"netdev {TABLE}"
    tap = _quoted(port.tap)
    to, frm = port.to_chain, port.from_chain
    lines = [
        f"add chain {where} {to} {{ type filter hook egress device {tap}"
        f" priority {EGRESS_PRIORITY}; policy drop; }}",
        f"add rule {where} {to} meta mark and {REPLY_BIT:#x} == {REPLY_BIT:#x} accept",
        f"add rule {where} {to} meta mark and 0xffff0000 == {MARK_BASE:#x} accept",
        f"add rule {where} {to} ether type arp accept",
        f"add rule {where} {to} udp sport 67 udp dport 68 accept",
        f"add rule {where} {to} icmpv6 type {{ {_ND} }} accept",
    ]
    lines += [
        f"add rule {where} {to} jump {c}"
        for c in sorted(filter(None, map(group_chain, port.groups)))
    ]
    lines += [
        f"add chain {where} {frm} {{ type filter hook ingress device {tap}"
        f" priority {INGRESS_PRIORITY}; policy accept; }}",
        *(f"add rule {where} {frm} {rule}" for rule in _guarded(port)),
        *(f"add rule {where} {frm} {rule}" for rule in _outbound(port)),
    ]
    return "\n".join(lines)


def _outbound(port: Port) -> list[str]:
    """What the guest may send out: what an outbound rule of one of its groups lets out (a
    group that lets everything out accepts it all); IPv4 nothing accepted is marked for the
    conntrack check (replies pass), IPv6 but neighbour discovery dropped."""
    jumps = sorted(filter(None, (group_chain(g, egress=True) for g in port.groups)))
    return [
        "udp sport 68 udp dport 67 accept",
        *(f"jump {c}" for c in jumps),
        f"icmpv6 type {{ {_ND_OUT} }} accept",
        "ether type ip6 drop",
        f"ether type ip meta mark set meta mark | {EGRESS_BIT:#x}",
    ]


def _guarded(port: Port) -> list[str]:
    """What a guest may not send: another MAC, a DHCP server's answers, another address."""
    mac = _mac(port.mac)
    rules = [
        f"ether saddr != {mac} drop",
        f"arp saddr ether != {mac} drop",
        "udp sport 67 udp dport 68 drop",
    ]
    if port.address is not None:
        address = _address(port.address)
        rules += [
            f"arp saddr ip != {{ {address}, 0.0.0.0 }} drop",
            "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
            f"ether type ip ip saddr != {address} drop",
        ]
    return rules


def allows(items: Iterable[Allow], *, egress: bool = False) -> list[str]:
    """The nftables matches of a group's rules (each then ``accept``); a rule whose sources
    are none (a group with no members yet) matches nothing and is left out. ``egress``: the
    rules are outbound, their ``sources`` the destinations."""
    out = []
    for allow in items:
        source = _sources(allow.sources, "daddr" if egress else "saddr")
        if source is None:
            continue
        what = _what(allow)
        if not source and not what:
            out.append("ether type ip")
        else:
            out.append(" ".join(x for x in (source, what) if x))
    return out


def _sources(sources: Sequence[str], field: str) -> str | None:
    """``ip saddr`` (``field``; ``daddr`` for destinations) of the sources (overlapping ranges
    merged: nftables refuses overlaps in one set), ``""`` for everywhere, ``None`` for
    nowhere."""
    nets = list(ipaddress.collapse_addresses(ipaddress.IPv4Network(s) for s in sources))
    if not nets:
        return None
    if any(n.prefixlen == 0 for n in nets):
        return ""
    return f"ip {field} {{ {', '.join(str(n) for n in nets)} }}"


def _what(allow: Allow) -> str:
    proto = allow.protocol
    if proto == ALL:
        return ""
    if proto in ("tcp", "udp"):
        if (allow.from_port, allow.to_port) == (0, 65535):
            return f"ip protocol {proto}"
        ports = (
            str(allow.from_port)
            if allow.from_port == allow.to_port
            else f"{allow.from_port}-{allow.to_port}"
        )
        return f"{proto} dport {ports}"
    if proto == "icmp":
        out = "ip protocol icmp"
        if allow.from_port != ANY:
            out += f" icmp type {allow.from_port}"
            if allow.to_port != ANY:
                out += f" icmp code {allow.to_port}"
        return out
    if proto.isdigit() and 0 <= int(proto) <= 255:
        return f"ip protocol {int(proto)}"
    raise ValueError(f"{proto!r} is not a protocol a rule can name")
