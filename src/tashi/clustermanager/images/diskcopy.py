"""SLA@SOI image copy: a VM's own persistent copy of a template image, made in PreparingDisk.

A disk created as ``img:copy`` (``DiskConfig.copy``) names a template. When the instance is
activated (``InstanceService.activate_vm``) and still has such disks, it moves Pending/Held ->
PreparingDisk on its host; each template is copied in the image store through the image
service (``images.py``: the copyImage checks, a task, the atomic write of
``tashi.images.operations``), to ``<instance>-<id>-disk<N>.<ext>``, a name that must not exist
yet; then, in one compare-and-swap, the disks are replaced by the copies (persistent, no longer
``copy``) and the instance moves to Activating (``disk_ready``), from where the node manager
starts it as any other. The history records each copy.

**Decision: the activation waits for the copy.** The scheduler's ``activateVm`` answers only once
the disks are ready and the node has been asked, as it does for a plain start, so the scheduler
sees one result per activation. A copy that outlasts PreparingDisk's deadline is ended by
``deadlines.py`` (Held); this module then finds the instance moved, removes the copies it made and
lets the ``StateConflict`` through.

If a copy fails, the copies already made are removed (a failed copy leaves nothing: the image
operations write under a hidden name) and the instance is Held with the reason and no host, so
the scheduler may try again; the template is untouched throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePath

from tashi.clustermanager.images.service import ImageService
from tashi.domain.errors import TashiError
from tashi.domain.ids import HostId
from tashi.domain.models import DiskConfig, Instance, Principal
from tashi.domain.states import Action

log = logging.getLogger(__name__)

#: Moves an instance through an action with extra fields; returns the saved instance.
Mover = Callable[..., Awaitable[Instance]]

KIND = "diskCopy"  # the history lines' kind


def needs_copy(inst: Instance) -> bool:
    return any(d.copy for d in inst.disks)


def copy_name(inst: Instance, index: int, template: str) -> str:
    """The image name of disk ``index``'s copy: ``<name>-<id>-disk<index><template's suffix>``."""
    return f"{inst.name}-{inst.id}-disk{index}{PurePath(template).suffix}"


@dataclass(frozen=True, slots=True)
class DiskCopies:
    images: ImageService

    async def prepare(
        self, caller: Principal, inst: Instance, host_id: HostId, move: Mover
    ) -> Instance:
        """Pending/Held -> PreparingDisk -> Activating with every ``copy`` disk made; the
        instance as saved. On failure: Held with the reason (``TashiError`` raised)."""
        preparing = await move(inst, Action.prepare_disk, host_id=host_id, clear_reason=True)
        made: list[str] = []
        try:
            disks = await self._copy_all(caller, preparing, made)
        except TashiError as exc:
            await self._discard(made)
            reason = f"copying its disk failed: {exc.message}"
            await move(
                preparing, Action.start_failed, reason=reason, clear_host=True, event=(KIND, reason)
            )
            raise
        pairs = zip(inst.disks, disks, strict=True)
        note = ", ".join(f"copied {d.uri} to {c.uri}" for d, c in pairs if d.copy)
        try:
            return await move(preparing, Action.disk_ready, disks=disks, event=(KIND, note))
        except TashiError:  # it moved meanwhile (a deadline, a force-destroy): nobody uses them
            await self._discard(made)
            raise

    async def _copy_all(
        self, caller: Principal, inst: Instance, made: list[str]
    ) -> tuple[DiskConfig, ...]:
        disks = []
        for index, disk in enumerate(inst.disks):
            if not disk.copy:
                disks.append(disk)
                continue
            name = copy_name(inst, index, disk.uri)
            log.info("copying image %s to %s for instance %s", disk.uri, name, inst.name)
            await self.images.copy_for_instance(caller, disk.uri, name)
            made.append(name)
            disks.append(DiskConfig(uri=name, persistent=True))
        return tuple(disks)

    async def _discard(self, names: list[str]) -> None:
        for name in names:
            try:
                await self.images.discard_copy(name)
            except TashiError as exc:
                log.warning("cannot remove the unused disk copy %s: %s", name, exc.message)
