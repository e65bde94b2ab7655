"""The nftables text that steers metadata traffic between the VMs' taps and the listener (pure).

One table, ``netdev tashi-metadata``, in the node manager's network namespace:

* for each NIC (``Nic``: a slot number, its tap, its guest's MAC) a base chain on the tap's
  **ingress** hook, which runs before the bridge sees the frame: a TCP segment to
  169.254.169.254 port 80 is marked with the NIC's mark, addressed to the metadata link's MAC
  and forwarded (``fwd``) into ``tashi-mdp``, one end of a veth pair whose other end,
  ``tashi-md``, holds 169.254.169.254 and the listener. Anything else to 169.254.169.254 is
  dropped: the metadata address never reaches the network, even while the node manager is down.
  Other frames go on to the bridge untouched;
* on ``tashi-mdp``'s ingress (what the listener sends back) the mark picks the NIC through the
  ``replies`` verdict map: the frame is addressed to that guest's MAC and forwarded into its tap,
  and nowhere else; a frame with no NIC's mark is dropped.

So the listener learns which NIC a connection came through from the mark its SYN carried (the
namespace's ``net.ipv4.tcp_fwmark_accept`` makes the accepted socket keep it, and its replies carry
it too), and a guest never names itself. Marks are ``MARK_BASE + slot``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TABLE = "tashi-metadata"
ADDRESS = "169.254.169.254"
PORT = 80
LINK = "tashi-md"  # holds ADDRESS; the listener is bound to it
PEER = "tashi-mdp"  # the veth end the taps' chains forward into
LINK_MAC = "02:a9:fe:a9:fe:01"
MARK_BASE = 0x74610000  # "ta" in the high half: clear of the small marks sites use
MAX_SLOTS = 0xFFFF
PRIORITY = -500  # before any other ingress chain (security groups do not apply to metadata)


@dataclass(frozen=True, slots=True)
class Nic:
    slot: int  # 1 .. MAX_SLOTS, unique among this host's NICs
    tap: str
    mac: str  # the guest's

    @property
    def mark(self) -> int:
        return MARK_BASE + self.slot


def slot_of(mark: int) -> int | None:
    """The slot a connection's mark names, ``None`` for a mark that is none of ours."""
    slot = mark - MARK_BASE
    return slot if 1 <= slot <= MAX_SLOTS else None


def _quoted(name: str) -> str:
    if not name or any(c in name for c in '"\\\n; {}'):
        raise ValueError(f"{name!r} cannot be named in an nftables rule")
    return f'"{name}"'


def table() -> str:
    """The table with no NIC: ``replies`` and the chain on ``tashi-mdp``."""
    return (
        f"table netdev {TABLE} {{\n"
        "  map replies { type mark : verdict; }\n"
        f"  chain back {{\n"
        f"    type filter hook ingress device {_quoted(PEER)} priority {PRIORITY}; policy drop;\n"
        "    meta mark vmap @replies\n"
        "  }\n"
        "}\n"
    )


def reset(nics: Iterable[Nic]) -> str:
    """One transaction: the table made anew with exactly ``nics`` (after a restart)."""
    lines = [f"table netdev {TABLE}", f"delete table netdev {TABLE}", table()]
    lines += [add(nic) for nic in nics]
    return "\n".join(lines)


def add(nic: Nic) -> str:
    """One transaction: ``nic``'s chains and its ``replies`` entry."""
    tap, where = _quoted(nic.tap), f"netdev {TABLE}"
    steer = (
        f"ip daddr {ADDRESS} tcp dport {PORT} meta mark set {nic.mark:#x}"
        f" ether daddr set {LINK_MAC} fwd to {_quoted(PEER)}"
    )
    return "\n".join(
        [
            f"add chain {where} in{nic.slot} {{ type filter hook ingress device {tap}"
            f" priority {PRIORITY}; policy accept; }}",
            f"add rule {where} in{nic.slot} {steer}",
            f"add rule {where} in{nic.slot} ip daddr {ADDRESS} drop",
            f"add chain {where} out{nic.slot}",
            f"add rule {where} out{nic.slot} ether daddr set {nic.mac} fwd to {tap}",
            f"add element {where} replies {{ {nic.mark:#x} : jump out{nic.slot} }}",
        ]
    )


def remove(nic: Nic) -> str:
    """One transaction: what ``add(nic)`` made, gone."""
    where = f"netdev {TABLE}"
    return "\n".join(
        [
            f"delete element {where} replies {{ {nic.mark:#x} }}",
            f"flush chain {where} out{nic.slot}",
            f"delete chain {where} out{nic.slot}",
            f"flush chain {where} in{nic.slot}",
            f"delete chain {where} in{nic.slot}",
        ]
    )
