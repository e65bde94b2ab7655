"""The kernel side of the metadata service, in the node manager's own network namespace.

``prepare`` makes (or finds) the veth pair ``tashi-md``/``tashi-mdp``: ``tashi-md`` holds
169.254.169.254/32, a fixed MAC and no ARP (a reply to a guest needs no neighbour: the chain on
``tashi-mdp`` addresses it), and sets ``net.ipv4.tcp_fwmark_accept`` so an accepted connection
keeps its SYN's mark (``rules.py`` says why). ``reset``, ``add`` and ``remove`` load the nftables
text of ``rules.py``, each one transaction (``tashi.nodemanager.nftables``: libnftables in the
process). All of it is idempotent and stays when the node manager stops: the VMs keep their
steering (and the metadata address stays off the network) until a node manager starts again and
``reset``s it to the VMs it adopted.

``Plumbing`` is the contract; ``KernelPlumbing`` the real one; ``fake.FakePlumbing`` records
calls. Failures leave as ``BackendFailure`` naming the command and the kernel's message; the
sysctl is this module's seam (nftables's is ``tashi.nodemanager.nftables``, pyroute2's
``tashi.network.netlink``).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tashi.domain.errors import BackendFailure, Dependency
from tashi.network.netlink import AsyncNetlink, Netlink
from tashi.nodemanager import nftables
from tashi.nodemanager.metadata import rules
from tashi.nodemanager.metadata.rules import Nic

FWMARK_ACCEPT = Path("/proc/sys/net/ipv4/tcp_fwmark_accept")
LINK_ALIAS = "tashi-metadata"


class Plumbing(Protocol):
    async def prepare(self) -> None:
        """Make the metadata link and set what the kernel needs. Idempotent."""

    async def reset(self, nics: Sequence[Nic]) -> None:
        """Steer exactly ``nics`` (one transaction): after a start, with the VMs adopted."""

    async def add(self, nic: Nic) -> None:
        """Steer ``nic``'s metadata traffic (its tap exists)."""

    async def remove(self, nic: Nic) -> None:
        """Stop steering ``nic``; a NIC already gone is no error."""

    async def close(self) -> None:
        """Release threads and sockets; the kernel state stays."""


class KernelPlumbing:
    def __init__(self, nft: str | None = None) -> None:
        self._nft = nft or shutil.which("nft") or "/usr/sbin/nft"
        self._netlink = AsyncNetlink(None)

    async def prepare(self) -> None:
        if not Path(self._nft).exists():
            raise BackendFailure(
                f"{self._nft} is missing: install Debian's nftables package",
                failed=Dependency.subprocess,
            )
        await self._netlink.run(_link)
        await asyncio.to_thread(_fwmark_accept)

    async def reset(self, nics: Sequence[Nic]) -> None:
        await self._load(rules.reset(nics), "resetting the metadata rules")

    async def add(self, nic: Nic) -> None:
        await self._load(rules.add(nic), f"steering the metadata traffic of tap {nic.tap}")

    async def remove(self, nic: Nic) -> None:
        try:
            await self._load(rules.remove(nic), f"removing the metadata rules of tap {nic.tap}")
        except BackendFailure as exc:
            if "No such file or directory" not in exc.message:
                raise

    async def close(self) -> None:
        await self._netlink.close()

    async def _load(self, script: str, what: str) -> None:
        await nftables.run_soon(self._nft, script, what)


def _link(nl: Netlink) -> None:
    nl.add_veth(rules.LINK, rules.PEER)
    nl.set(rules.LINK, alias=LINK_ALIAS, address=rules.LINK_MAC, arp=False, up=True)
    nl.set(rules.PEER, alias=LINK_ALIAS, up=True)
    nl.add_ipv4(rules.LINK, rules.ADDRESS, 32)


def _fwmark_accept() -> None:
    try:
        if FWMARK_ACCEPT.read_text().strip() != "1":
            FWMARK_ACCEPT.write_text("1\n")
    except OSError as exc:
        raise BackendFailure(
            f"cannot set net.ipv4.tcp_fwmark_accept: {exc}", failed=Dependency.other
        ) from exc
