"""The in-memory DHCP/DNS backend: the contract of ``base.py`` with nothing behind it.

For unit tests of the hook and scheduler simulations. ``calls`` records what was asked. A fake
"restarted" (a new object) sees what the old one published only when it is given the same
``state`` (the dnsmasq backend finds it in its files).
"""

from __future__ import annotations

from collections.abc import Iterable

from tashi.dhcpdns.backends.base import HostEntry, by_key
from tashi.domain.ids import InstanceId


class FakeBackend:
    name = "fake"

    def __init__(self, state: dict[tuple[InstanceId, int], HostEntry] | None = None) -> None:
        self._entries = state if state is not None else {}
        self.calls: list[str] = []

    async def replace_all(self, entries: Iterable[HostEntry]) -> None:
        self.calls.append("replace_all")
        self._entries.clear()
        self._entries.update(by_key(entries))

    async def publish(self, entries: Iterable[HostEntry]) -> None:
        self.calls.append("publish")
        self._entries.update(by_key(entries))

    async def withdraw(self, instance_id: InstanceId) -> None:
        self.calls.append("withdraw")
        for key in [k for k in self._entries if k[0] == instance_id]:
            del self._entries[key]

    async def entries(self) -> list[HostEntry]:
        return sorted(self._entries.values())

    async def close(self) -> None:
        self.calls.append("close")
