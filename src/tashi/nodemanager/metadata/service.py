"""``MetadataService``: the metadata of the VMs this node manager runs, kept as they come and go.

The node service calls it around each VM (``tashi.nodemanager.collaborators.GuestMetadata``):
``attach`` once the VM's taps exist and before its guest runs (a start, a restore, the target
of a live migration), ``detach`` when the VM has gone (whatever way: exit, destroy, migrated
away), ``restore`` once after a restart with the VMs it adopted. Each NIC of a tap the driver
made gets a slot (its mark, ``rules.py``) and its guest record; the listener (``server.py``)
answers a connection with the guest of its slot. A migrated VM is served by its new host from
the moment that host attached it, and its old host stops when it lets the VM go.

``seed`` makes the NoCloud disk for VMs that want one (``nocloud.py``); it works whether or not
the network side does.

A failure of the kernel side is logged and leaves the VM without network metadata, never
without its start: the metadata is a service to the guest, not a condition of running it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from tashi.domain.errors import TashiError
from tashi.domain.ids import InstanceId
from tashi.domain.models import Instance
from tashi.network.base import Attachment
from tashi.nodemanager.metadata import nocloud
from tashi.nodemanager.metadata.answers import Answers
from tashi.nodemanager.metadata.guests import Guest, Site
from tashi.nodemanager.metadata.plumbing import Plumbing
from tashi.nodemanager.metadata.rules import MAX_SLOTS, Nic
from tashi.nodemanager.metadata.server import MetadataServer, listening_socket
from tashi.vmm.base import DiskSpec

log = logging.getLogger(__name__)


class MetadataService:
    def __init__(
        self,
        plumbing: Plumbing | None,
        answers: Answers,
        site: Site,
        now: Callable[[], datetime],
        *,
        seeds: nocloud.Seeds | None = None,
    ) -> None:
        """``plumbing`` ``None``: no network metadata (a network driver that makes no taps);
        ``seeds`` ``None``: no NoCloud disks."""
        self._plumbing = plumbing
        self._site = site
        self._now = now
        self._seeds = seeds
        self._server = MetadataServer(answers, self.guest)
        self._lock = asyncio.Lock()
        self._slots: dict[int, tuple[Nic, Guest]] = {}
        self.serving = False

    async def start(self) -> None:
        """Make the kernel side and listen; on failure log why and serve no network metadata."""
        if self._plumbing is None:
            return
        try:
            await self._plumbing.prepare()
            await self._server.start(await asyncio.to_thread(listening_socket))
        except (TashiError, OSError) as exc:
            log.error("instance metadata is not served on this host: %s", _why(exc))
            return
        self.serving = True
        log.info("serving instance metadata on 169.254.169.254:80 to the VMs' taps")

    def guest(self, slot: int) -> Guest | None:
        entry = self._slots.get(slot)
        return entry[1] if entry is not None else None

    def guests(self) -> dict[str, Guest]:
        """Tap name -> guest, of every NIC served (for tests and logs)."""
        return {nic.tap: guest for nic, guest in self._slots.values()}

    async def attach(self, instance: Instance, taps: Sequence[Attachment]) -> None:
        if not self.serving or self._plumbing is None:
            return
        async with self._lock:
            for tap in taps:
                nic = Nic(self._free_slot(), tap.tap, tap.mac)
                self._slots[nic.slot] = (nic, self._guest(instance, tap.nic_index))
                try:
                    await self._plumbing.add(nic)
                except TashiError as exc:
                    del self._slots[nic.slot]
                    log.error("instance %s: no metadata on %s: %s", instance.id, tap.tap, _why(exc))

    async def detach(self, instance_id: InstanceId) -> None:
        if self._plumbing is None:
            return
        async with self._lock:
            for slot, (nic, guest) in list(self._slots.items()):
                if guest.instance.id != instance_id:
                    continue
                del self._slots[slot]
                try:
                    await self._plumbing.remove(nic)
                except TashiError as exc:
                    log.error(
                        "instance %s: metadata rules of %s: %s", instance_id, nic.tap, _why(exc)
                    )

    async def restore(self, vms: Sequence[tuple[Instance, Sequence[Attachment]]]) -> None:
        """After a restart: serve exactly these VMs' NICs (stale rules go in the same step)."""
        if not self.serving or self._plumbing is None:
            return
        async with self._lock:
            self._slots.clear()
            for instance, taps in vms:
                for tap in taps:
                    nic = Nic(self._free_slot(), tap.tap, tap.mac)
                    self._slots[nic.slot] = (nic, self._guest(instance, tap.nic_index))
            try:
                await self._plumbing.reset([nic for nic, _ in self._slots.values()])
            except TashiError as exc:
                log.error("instance metadata rules could not be restored: %s", _why(exc))

    def seed(self, instance: Instance, directory: Path) -> DiskSpec | None:
        """The NoCloud disk of ``instance`` in its VM ``directory``, if it wants one (blocking)."""
        if self._seeds is None:
            return None
        return self._seeds.make(self._guest(instance, 0), directory)

    async def close(self) -> None:
        await self._server.close()
        if self._plumbing is not None:
            await self._plumbing.close()

    def _guest(self, instance: Instance, nic_index: int) -> Guest:
        return Guest(instance, nic_index, self._site, self._now())

    def _free_slot(self) -> int:
        slot = 1
        while slot in self._slots:
            slot += 1
        if slot > MAX_SLOTS:
            raise TashiError(f"more than {MAX_SLOTS} NICs on one host")
        return slot


def _why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, TashiError) else str(exc)
