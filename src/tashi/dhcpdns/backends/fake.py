"""The in-memory DHCP/DNS backend: the contract of ``base.py`` with nothing behind it.

For unit tests of the hook and scheduler simulations. ``calls`` records what was asked.
"""

from __future__ import annotations

from collections.abc import Iterable

from tashi.dhcpdns.backends.base import HostEntry, by_key
from tashi.domain.ids import InstanceId


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self._entries: dict[tuple[InstanceId, int], HostEntry] = {}
        self.calls: list[str] = []

    async def replace_all(self, entries: Iterable[HostEntry]) -> None:
        self.calls.append("replace_all")
        self._entries = by_key(entries)

    async def publish(self, entries: Iterable[HostEntry]) -> None:
        self.calls.append("publish")
        self._entries.update(by_key(entries))

    async def withdraw(self, instance_id: InstanceId) -> None:
        self.calls.append("withdraw")
        self._entries = {k: e for k, e in self._entries.items() if k[0] != instance_id}

    async def entries(self) -> list[HostEntry]:
        return sorted(self._entries.values())

    async def close(self) -> None:
        self.calls.append("close")
