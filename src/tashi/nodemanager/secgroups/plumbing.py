"""The kernel side of security groups, in the node manager's own network namespace.

``prepare`` makes sure bridged IPv4 passes the IP hooks, where conntrack runs
(``net.bridge.bridge-nf-call-iptables``: the kernel's br_netfilter, per namespace; without it
no reply to a guest's own connection could be told from a stranger's packet), and makes both
tables (``rules.tables``). ``load`` runs an nftables script of ``rules.py`` as one transaction
(``tashi.nodemanager.nftables``: libnftables in the process, well under a millisecond). All of
it stays when the node manager stops: the VMs keep their guard until a node manager starts
again and ``reset``s it to the VMs it adopted.

``Plumbing`` is the contract; ``KernelPlumbing`` the real one; ``fake.FakePlumbing`` keeps the
scripts it is given. Failures leave as ``BackendFailure`` naming the command and the kernel's
message, as ``nftables.run`` raises them.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Protocol

from tashi.domain.errors import BackendFailure, Dependency
from tashi.nodemanager import nftables
from tashi.nodemanager.secgroups import rules

BRIDGE_CALLS_IP = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


class Plumbing(Protocol):
    async def prepare(self) -> None:
        """Bridged IPv4 through conntrack, and both tables. Idempotent; ``BackendFailure``
        when the kernel cannot (no nftables, no br_netfilter)."""

    async def load(self, script: str, what: str) -> None:
        """Run one nftables transaction; ``what`` says what it does, for the error."""

    async def close(self) -> None:
        """Release what the process holds; the kernel state stays."""


class KernelPlumbing:
    def __init__(self, nft: str | None = None, sysctl: Path = BRIDGE_CALLS_IP) -> None:
        self._nft = nft or shutil.which("nft") or "/usr/sbin/nft"
        self._sysctl = sysctl

    async def prepare(self) -> None:
        if not Path(self._nft).exists():
            raise BackendFailure(
                f"{self._nft} is missing: install Debian's nftables package",
                failed=Dependency.subprocess,
            )
        await asyncio.to_thread(_bridged_ip, self._sysctl)
        await self.load(rules.tables(), "making the security-group tables")

    async def load(self, script: str, what: str) -> None:
        await nftables.run_soon(self._nft, script, what)

    async def close(self) -> None:
        """Nothing held here: the process's libnftables context is ``nftables``'s."""


def _bridged_ip(sysctl: Path) -> None:
    try:
        if sysctl.read_text().strip() != "1":
            sysctl.write_text("1\n")
    except OSError as exc:
        raise BackendFailure(
            f"cannot set net.bridge.bridge-nf-call-iptables ({exc}): the kernel needs"
            " br_netfilter (modprobe br_netfilter) for security groups",
            failed=Dependency.other,
        ) from exc
