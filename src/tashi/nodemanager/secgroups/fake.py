"""The security-group plumbing with no kernel behind it: it keeps the scripts it is given, for
the node service's tests and for node managers whose network driver makes no taps (``fake``)."""

from __future__ import annotations

from tashi.domain.errors import BackendFailure


class FakePlumbing:
    def __init__(self, *, failing: bool = False) -> None:
        self.prepared = False
        self.failing = failing  # every load fails, as a kernel that refuses would
        self.scripts: list[tuple[str, str]] = []  # (what, script) of each load, in order

    async def prepare(self) -> None:
        self._check()
        self.prepared = True

    async def load(self, script: str, what: str) -> None:
        self._check()
        self.scripts.append((what, script))

    async def close(self) -> None:
        """Nothing held."""

    @property
    def last(self) -> str:
        return self.scripts[-1][1] if self.scripts else ""

    def _check(self) -> None:
        if self.failing:
            raise BackendFailure("(fake) nft refused")
