"""The metadata plumbing with no kernel behind it: it keeps the NICs it would steer, for the node
service's tests and for node managers whose network driver makes no taps (``fake``)."""

from __future__ import annotations

from collections.abc import Sequence

from tashi.domain.errors import BackendFailure
from tashi.nodemanager.metadata.rules import Nic


class FakePlumbing:
    def __init__(self, *, failing: bool = False) -> None:
        self.nics: dict[int, Nic] = {}  # slot -> NIC, as the kernel would hold them
        self.prepared = False
        self.failing = failing  # every change fails, as a kernel that refuses would
        self.calls: list[tuple[str, object]] = []

    async def prepare(self) -> None:
        self.calls.append(("prepare", None))
        self._check()
        self.prepared = True

    async def reset(self, nics: Sequence[Nic]) -> None:
        self.calls.append(("reset", [n.tap for n in nics]))
        self._check()
        self.nics = {n.slot: n for n in nics}

    async def add(self, nic: Nic) -> None:
        self.calls.append(("add", nic.tap))
        self._check()
        self.nics[nic.slot] = nic

    async def remove(self, nic: Nic) -> None:
        self.calls.append(("remove", nic.tap))
        self._check()
        self.nics.pop(nic.slot, None)

    async def close(self) -> None:
        self.calls.append(("close", None))

    def _check(self) -> None:
        if self.failing:
            raise BackendFailure("(fake) nft refused")
