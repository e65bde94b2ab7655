"""The suspend area of the shared store: where a suspended VM's state waits for its resume.

A node manager saves a VM to ``<[Vfs] prefix>/suspend/<instance id>_<name>.gz`` (written as
``….partial`` first, renamed when complete) and a resume restores it from there; the node
manager deletes the file once a restore has finished. The cluster manager names the file
(``suspend_file``) and removes it when no instance can use it any more
(``SuspendArea.discard_for``): the instance was destroyed while Suspended, or after a
``resumeVm`` and before the restore finished, or it was restarted elsewhere from its image (ADR
0010: ``restart.reschedule`` drops the resume source; a suspend cut short by the host's loss
leaves a ``.partial``), or a node reports a suspend finished for an instance that no longer
waits for it (``discard_name``: destroyed while a restarted node manager finished it). Until
then every such file stayed in the store for ever, the VM's whole memory each time (found by
the fault-injection suite, issue 14.6).

The file name holds the instance's id, never reused for a file of another instance while this
one exists, so removing it once the instance is gone or restarted touches nobody else's state.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tashi.domain.hints import resume_source
from tashi.domain.models import Instance
from tashi.domain.states import InstanceState

log = logging.getLogger(__name__)

PARTIAL = ".partial"  # the node manager's name for a file still being written
_SAVING = (InstanceState.Suspended, InstanceState.Suspending)


def suspend_file(inst: Instance) -> str:
    """Where an instance's saved state goes, relative to the suspend area."""
    return f"{inst.id}_{inst.name}.gz"


def may_hold_a_file(inst: Instance) -> bool:
    """Whether a suspend file of ``inst`` may exist: it is (being) suspended, or a resume of it
    has not finished."""
    return inst.state in _SAVING or resume_source(inst.hints) is not None


class SuspendArea:
    """``<prefix>/suspend`` of the shared store (``[Vfs] prefix``)."""

    def __init__(self, prefix: Path) -> None:
        self.directory = prefix / "suspend"

    async def discard_for(self, inst: Instance) -> list[str]:
        """Remove ``inst``'s suspend file and any partial one, when it may have one (as it was
        before the change that made them useless); the names removed."""
        if not may_hold_a_file(inst):
            return []
        return await self.discard(inst)

    async def discard(self, inst: Instance) -> list[str]:
        """Remove ``inst``'s suspend file and any partial one; the names removed. Called once
        nothing can use them (see the module doc). A file that cannot be removed is logged,
        not raised: the instance's own change is done."""
        return await asyncio.to_thread(self._remove, suspend_file(inst))

    async def discard_name(self, instance_id: int, name: str) -> list[str]:
        """Remove the suspend file ``name`` a node reported for ``instance_id`` (and its
        partial); a name that is not one of that instance's files is left alone."""
        if "/" in name or not name.startswith(f"{int(instance_id)}_") or not name.endswith(".gz"):
            log.warning("not removing %r: not a suspend file of instance %s", name, instance_id)
            return []
        return await asyncio.to_thread(self._remove, name)

    def _remove(self, name: str) -> list[str]:
        removed = []
        for candidate in (name, name + PARTIAL):
            path = self.directory / candidate
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot remove the unused suspend file %s: %s", path, exc.strerror)
                continue
            removed.append(candidate)
        if removed:
            log.info("removed the suspend file(s) no instance uses any more: %s", removed)
        return removed
