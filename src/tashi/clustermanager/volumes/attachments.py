"""Volumes in and out of instances: EC2's AttachVolume and DetachVolume.

A volume attached to an instance is one of its persistent disks (``DiskConfig`` ``volume:<id>``
with the ``device`` it was given), so every VM the instance gets has it: a start after a stop,
a migration target (the node manager re-opens it there, ``nodemanager/disks.py``). Whether a VM
must change now depends on the instance's state:

* **Running or Paused**: its node manager hot-plugs the volume into the VM (``attach_disk``)
  or takes it out once the guest lets go (``detach_disk``);
* **Stopped**: no VM; the volume is simply there at the next start, or no longer;
* anything else (starting, stopping, migrating, suspended): ``InstanceNotReady``, try again.

**Race-free.** The volume's state moves by compare-and-swap (``available`` → ``attaching`` →
``attached`` → ``detaching`` → ``available``), so two attaches of one volume cannot both win,
and the store allows one volume per attachment point of an instance. The instance's disks
change in the same unit as the volume, by a compare-and-swap of the instance's state onto
itself over the disks read in that unit (as ``InstanceService`` saves a disk copy's disks);
attaches and detaches of one instance run one at a time here (``_lock``), so no two of them
compute its disks from the same read.

**The intent sticks before the node is asked.** The disk joins the instance (``attaching``)
before the hot-plug, and leaves it (``detaching`` → ``available``) only after the hot-unplug:
a VM never has a disk its instance does not name. A node that answered with a refusal is undone
at once; one whose answer was lost (``Unanswered``) leaves the volume ``attaching`` or
``detaching``, which ``VolumeService.reconcile`` finishes by asking again (both node calls are
idempotent). A guest that does not let a volume go in time keeps it (``attached`` again,
``InvalidState``), unless the caller forces: the volume then stays ``detaching`` until the guest
lets go or the VM ends, and reconcile finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.domain.clock import Clock
from tashi.domain.errors import InvalidInput, InvalidState, NotFound, TashiError, Unanswered
from tashi.domain.ids import InstanceId
from tashi.domain.models import DiskConfig, Host, Instance, Principal
from tashi.domain.states import InstanceState
from tashi.domain.volumes import (
    MAX_ATTACHED,
    Attachment,
    AttachmentLimit,
    InstanceNotReady,
    UnknownVolume,
    Volume,
    VolumeAction,
    VolumeInUse,
    VolumeState,
    free_index,
    next_volume_state,
)
from tashi.storage.contract import InstanceChanges, Transaction

log = logging.getLogger(__name__)

S, V, A = InstanceState, VolumeState, VolumeAction
HOT = frozenset({S.Running, S.Paused})  # a VM runs: hot-plug
COLD = frozenset({S.Stopped})  # no VM and none starting: the record alone
DETACH_TIMEOUT = 30.0  # seconds a guest has to let a volume go


@dataclass(frozen=True, slots=True)
class Planned:
    """A volume ``RunInstances`` attaches to an instance it makes (``BlockDeviceMappings``)."""

    volume: Volume
    device: str
    delete_on_termination: bool


def visible(tx: Transaction, caller: Principal, volume_id: str) -> Volume:
    """The volume, if the caller may see it (its owner, or a trusted caller)."""
    found = tx.volumes.get(volume_id)
    if found is None or not (caller.is_trusted or found.user_id == caller.user_id):
        raise UnknownVolume(volume_id)
    return found


def moved(volume: Volume, action: VolumeAction) -> Volume:
    """``volume`` after ``action`` (the state table's ``InvalidState`` otherwise)."""
    return replace(volume, state=next_volume_state(volume.state, action))


def with_disks(
    tx: Transaction, iid: InstanceId, disks: Sequence[DiskConfig], now: datetime
) -> None:
    """Save the instance's disks by a compare-and-swap of its state onto itself."""
    inst = tx.instances.get(iid)
    changes = InstanceChanges(disks=tuple(disks))
    tx.instances.transition(iid, inst.state, inst.state, now=now, changes=changes)


def disk_of(volume: Volume, device: str) -> DiskConfig:
    return DiskConfig(uri=volume.uri, persistent=True, device=device)


class Attachments:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        nodes: NodeGateway,
        *,
        detach_timeout: float = DETACH_TIMEOUT,
    ) -> None:
        self._db = db
        self._clock = clock
        self._nodes = nodes
        self.detach_timeout = detach_timeout
        self._locks: dict[InstanceId, tuple[asyncio.Lock, int]] = {}  # lock, its users
        #: volumes a request of this process is moving: reconcile leaves them alone
        self.busy: set[str] = set()

    @contextlib.asynccontextmanager
    async def _lock(self, iid: InstanceId) -> AsyncIterator[None]:
        """One attach or detach of the instance at a time (the lock goes with its last user)."""
        lock, users = self._locks.get(iid, (asyncio.Lock(), 0))
        self._locks[iid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[iid]
            if users == 1:
                del self._locks[iid]
            else:
                self._locks[iid] = (lock, users - 1)

    # --- attaching --------------------------------------------------------------------

    async def attach(
        self,
        caller: Principal,
        volume_id: str,
        instance_id: InstanceId,
        device: str,
        *,
        delete_on_termination: bool = False,
    ) -> Volume:
        """AttachVolume: the volume becomes a disk of the instance at ``device``; hot-plugged
        into its VM if it runs (``attaching`` until the node is done), ``attached`` at once if
        it is stopped. The caller's own volume and instance (an administrator's: any volume to
        its owner's instance)."""
        now = self._clock.now()

        def begin(tx: Transaction) -> tuple[Volume, Instance, Host | None]:
            volume = visible(tx, caller, volume_id)
            inst = self._instance(tx, caller, instance_id, volume)
            if volume.state in (V.attaching, V.attached, V.detaching):
                raise VolumeInUse(f"{volume_id} is already attached to an instance")
            if volume.state is not V.available:
                raise InvalidState(f"The volume '{volume_id}' is {volume.state.value}.")
            if inst.state not in HOT | COLD:
                raise InstanceNotReady(_not_ready(inst))
            points = [v.attachment for v in tx.volumes.list(instance_id=instance_id)]
            if len(points) >= MAX_ATTACHED:
                raise AttachmentLimit(
                    f"instance {instance_id} has {MAX_ATTACHED} volumes attached, its most"
                )
            free_index([p.index for p in points if p is not None], device)
            point = Attachment(instance_id, device, now, delete_on_termination)
            new = replace(moved(volume, A.attach), attachment=point)
            if inst.state in COLD:
                new = moved(new, A.attached)
            tx.volumes.transition(volume_id, V.available, new)
            others = [d for d in inst.disks if d.uri != new.uri]
            with_disks(tx, instance_id, (*others, disk_of(new, device)), now)
            host = tx.hosts.get(inst.host_id) if inst.host_id and inst.state in HOT else None
            return new, tx.instances.get(instance_id), host

        async with self._lock(instance_id):
            self.busy.add(volume_id)
            try:
                volume, inst, host = await self._db.write(begin)
                if volume.state is V.attached:
                    return volume
                return await self._plug(volume, inst, host)
            finally:
                self.busy.discard(volume_id)

    async def _plug(self, volume: Volume, inst: Instance, host: Host | None) -> Volume:
        assert volume.attachment is not None
        disk = disk_of(volume, volume.attachment.device)
        try:
            if host is None:
                raise InvalidState(f"instance {inst.id} runs on no host")
            await self._nodes.attach_disk(host, inst, disk)
        except Unanswered:
            log.warning("%s: no answer from the node attaching it; reconcile asks again", volume.id)
            raise
        except TashiError:
            await self._db.write(lambda tx: self._unplugged(tx, volume, A.attach_failed))
            raise
        return await self._db.write(lambda tx: self.step(tx, volume, A.attached))

    def _unplugged(self, tx: Transaction, volume: Volume, action: VolumeAction) -> Volume:
        """The volume's disk leaves its instance (if that is still there) and it is free."""
        assert volume.attachment is not None
        iid = volume.attachment.instance_id
        try:
            inst = tx.instances.get(iid)
        except NotFound:
            inst = None
        if inst is not None:
            kept = [d for d in inst.disks if d.uri != volume.uri]
            if len(kept) != len(inst.disks):
                with_disks(tx, iid, kept, self._clock.now())
        return self.step(tx, volume, action, detached=True)

    def step(
        self, tx: Transaction, volume: Volume, action: VolumeAction, *, detached: bool = False
    ) -> Volume:
        """The volume moved through ``action`` by compare-and-swap (``detached``: its
        attachment gone too)."""
        new = moved(volume, action)
        if detached:
            new = replace(new, attachment=None)
        return tx.volumes.transition(volume.id, volume.state, new)

    def attach_new(self, tx: Transaction, inst: Instance, planned: Sequence[Planned]) -> Instance:
        """In the unit that inserts ``inst`` (RunInstances' ``BlockDeviceMappings``): the
        planned volumes (``available``, the instance's owner's) attached to it, and its disks
        saved with theirs, before anything can place it."""
        now = self._clock.now()
        disks = list(inst.disks)
        for plan in planned:
            point = Attachment(inst.id, plan.device, now, plan.delete_on_termination)
            new = moved(replace(moved(plan.volume, A.attach), attachment=point), A.attached)
            tx.volumes.transition(plan.volume.id, V.available, new)
            disks.append(disk_of(new, plan.device))
        if planned:
            with_disks(tx, inst.id, disks, now)
        return tx.instances.get(inst.id)

    # --- detaching --------------------------------------------------------------------

    async def detach(
        self,
        caller: Principal,
        volume_id: str,
        *,
        instance_id: InstanceId | None = None,
        force: bool = False,
    ) -> Volume:
        """DetachVolume: the volume leaves its instance (hot-unplugged from a running VM once
        the guest lets it go); ``available`` when done. ``InvalidState`` for a volume that is
        not attached, or whose guest holds on (unless ``force``: it stays ``detaching``)."""
        first = await self._db.read(lambda tx: visible(tx, caller, volume_id))
        if first.attachment is None:
            raise InvalidState(f"The volume '{volume_id}' is {first.state.value}.")
        iid = first.attachment.instance_id
        if instance_id is not None and instance_id != iid:
            raise InvalidInput(
                f"The volume '{volume_id}' is not attached to instance {instance_id}"
            )

        def begin(tx: Transaction) -> tuple[Volume, Instance | None, Host | None]:
            volume = visible(tx, caller, volume_id)
            if volume.state is not V.attached or volume.attachment is None:
                raise InvalidState(f"The volume '{volume_id}' is {_shown(volume)}.")
            try:
                inst: Instance | None = tx.instances.get(iid)
            except NotFound:
                inst = None  # gone: only the record is left to settle
            if inst is not None and inst.state not in HOT | COLD:
                raise InstanceNotReady(_not_ready(inst))
            leaving = self.step(tx, volume, A.detach)
            if inst is None or inst.state in COLD:
                return self._unplugged(tx, leaving, A.detached), None, None
            host = tx.hosts.get(inst.host_id) if inst.host_id is not None else None
            return leaving, inst, host

        async with self._lock(iid):
            self.busy.add(volume_id)
            try:
                volume, inst, host = await self._db.write(begin)
                if inst is None:
                    return volume
                return await self._unplug(volume, inst, host, force)
            finally:
                self.busy.discard(volume_id)

    async def _unplug(
        self, volume: Volume, inst: Instance, host: Host | None, force: bool
    ) -> Volume:
        try:
            if host is None:
                raise InvalidState(f"instance {inst.id} runs on no host")
            await self._nodes.detach_disk(host, inst, volume.uri, self.detach_timeout)
        except Unanswered:
            log.warning("%s: no answer from the node detaching it; reconcile asks again", volume.id)
            raise
        except InvalidState:
            if force:  # the guest keeps it for now; reconcile finishes when it lets go or ends
                return volume
            await self._db.write(lambda tx: self.step(tx, volume, A.detach_failed))
            raise
        except TashiError:
            await self._db.write(lambda tx: self.step(tx, volume, A.detach_failed))
            raise
        return await self._db.write(lambda tx: self._unplugged(tx, volume, A.detached))

    # --- finishing what was left ------------------------------------------------------

    async def finish(self, volume: Volume) -> Volume | None:
        """Move a volume left ``attaching`` or ``detaching`` (a lost answer, a forced detach,
        a restart) on, from what its instance is now; the volume as it ends up (``None``:
        nothing could be done now). Asks the node again where a VM runs."""
        if volume.attachment is None or volume.id in self.busy:
            return None
        iid = volume.attachment.instance_id
        async with self._lock(iid):
            inst, host = await self._db.read(lambda tx: instance_and_host(tx, iid))
            try:
                if volume.state is V.attaching:
                    return await self._finish_attach(volume, inst, host)
                if volume.state is V.detaching:
                    return await self._finish_detach(volume, inst, host)
            except TashiError as exc:
                log.info("%s: still %s: %s", volume.id, volume.state.value, exc.message)
        return None

    async def _finish_attach(
        self, volume: Volume, inst: Instance | None, host: Host | None
    ) -> Volume | None:
        has = inst is not None and any(d.uri == volume.uri for d in inst.disks)
        if inst is None or not has:
            return await self._db.write(lambda tx: self._unplugged(tx, volume, A.attach_failed))
        if inst.state in HOT and host is not None:
            assert volume.attachment is not None
            await self._nodes.attach_disk(host, inst, disk_of(volume, volume.attachment.device))
        elif inst.state not in COLD:
            return None
        return await self._db.write(lambda tx: self.step(tx, volume, A.attached))

    async def _finish_detach(
        self, volume: Volume, inst: Instance | None, host: Host | None
    ) -> Volume | None:
        if inst is not None and inst.state in HOT and host is not None:
            await self._nodes.detach_disk(host, inst, volume.uri, 1.0)
        elif inst is not None and inst.state not in COLD:
            return None
        return await self._db.write(lambda tx: self._unplugged(tx, volume, A.detached))

    def _instance(
        self, tx: Transaction, caller: Principal, iid: InstanceId, volume: Volume
    ) -> Instance:
        try:
            inst = tx.instances.get(iid)
        except NotFound:
            raise NotFound(f"The instance ID '{iid}' does not exist") from None
        if not (caller.is_trusted or inst.user_id == caller.user_id):
            raise NotFound(f"The instance ID '{iid}' does not exist")
        if inst.user_id != volume.user_id:
            raise InvalidInput(f"{volume.id} and instance {iid} belong to different users")
        return inst


def instance_and_host(tx: Transaction, iid: InstanceId) -> tuple[Instance | None, Host | None]:
    try:
        inst = tx.instances.get(iid)
    except NotFound:
        return None, None
    if inst.host_id is None:
        return inst, None
    try:
        return inst, tx.hosts.get(inst.host_id)
    except NotFound:
        return inst, None


def _not_ready(inst: Instance) -> str:
    return (
        f"The instance '{inst.id}' is {inst.state.name}: volumes are attached to and detached"
        " from running, paused or stopped instances only"
    )


def _shown(volume: Volume) -> str:
    return volume.state.value if volume.attachment is None else f"{volume.state.value} (in-use)"
