"""The VM events a node manager owes its cluster manager, kept on disk until it has them.

An event (a VM exited, a suspend finished or failed, a restore started) is often the only
record of what happened: once a suspended VM is forgotten, nothing on the host says it was
suspended. So each event is written to ``<stateDir>/events/<sequence>.json`` when it is put,
before the node manager forgets the VM, and deleted only after the cluster manager has
acknowledged the batch that carried it. A node manager killed at any line sends what it owed
after its restart, oldest first. One killed between the cluster manager's acknowledgement and
the deletion sends a batch twice; the cluster manager ignores an event that no longer fits its
instance's state (``nodereports``), so the second copy changes nothing.

Each file holds the event in the node API's wire form (``schemas.VmEvent``, through
``nodeapi.convert``), as it always has, so a node manager reads what an older one left.
The files are written atomically (a temporary file renamed), not synced: they outlive the node
manager, which is the point; a host that loses power loses its VMs with them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from pathlib import Path

from tashi.domain.nodes import NodeEvent
from tashi.nodeapi import convert

log = logging.getLogger(__name__)

_DIGITS = 12


class Outbox:
    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir / "events"
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._pending: deque[tuple[Path, NodeEvent]] = deque(self._load())
        last = self._pending[-1][0] if self._pending else None
        self._next = int(last.stem) + 1 if last is not None else 0
        #: Set by ``put``: there are events to send (the sender clears it). Not at start: what
        #: an earlier run left goes once the node has registered (``Reporter.register``).
        self.ready = asyncio.Event()

    def _load(self) -> list[tuple[Path, NodeEvent]]:
        found: list[tuple[Path, NodeEvent]] = []
        for path in sorted(self._dir.glob("*.json")):
            if not path.stem.isdigit():
                continue
            try:
                found.append((path, convert.event_from_json(path.read_bytes())))
            except (OSError, ValueError) as exc:
                log.error("dropping the unreadable VM event %s: %s", path, exc)
                path.unlink(missing_ok=True)
        for stale in self._dir.glob(".*.new"):  # a put cut short: its event was never kept
            stale.unlink(missing_ok=True)
        if found:
            log.info("%d VM event(s) from before the restart are still to be sent", len(found))
        return found

    def put(self, event: NodeEvent) -> None:
        path = self._dir / f"{self._next:0{_DIGITS}d}.json"
        self._next += 1
        tmp = path.with_name(f".{path.name}.new")
        tmp.write_bytes(convert.event_json(event).encode())
        os.replace(tmp, path)
        self._pending.append((path, event))
        self.ready.set()

    def __len__(self) -> int:
        return len(self._pending)

    def oldest(self, count: int) -> list[NodeEvent]:
        """The ``count`` oldest events not yet acknowledged (fewer if there are fewer)."""
        return [self._pending[i][1] for i in range(min(count, len(self._pending)))]

    def delivered(self, count: int) -> None:
        """The cluster manager acknowledged the ``count`` oldest events: forget them."""
        for _ in range(min(count, len(self._pending))):
            path, _event = self._pending.popleft()
            path.unlink(missing_ok=True)
