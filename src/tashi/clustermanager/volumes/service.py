"""``VolumeService``: a user's volumes and snapshots (EC2's CreateVolume, DescribeVolumes,
DeleteVolume, CreateSnapshot, DescribeSnapshots, DeleteSnapshot; attaching is
``attachments.py``'s), their files in the shared store (``tashi.images.volumes``).

Who may do what: users see and touch their own volumes and snapshots, and another's are
``UnknownVolume``/``UnknownSnapshot`` as if they did not exist; administrators (and the
cluster's daemons) see all.

**Files are made in the background.** A volume is recorded ``creating`` and answered at once, as
EC2 does; its file is made (empty, or from a snapshot) by a task of this process, after which it
is ``available`` (or ``error``). A snapshot is ``pending`` until its copy is complete. Each step
is a compare-and-swap, so a task whose volume changed meanwhile changes nothing.

**Snapshots are consistent.** A disk no VM writes (a volume that is available, or attached to a
stopped instance) is copied by ``qemu-img convert`` under a shared image lock: no VM opens it
meanwhile. A disk a running VM writes is copied by the VM's own node manager with QEMU's
``blockdev-backup`` (``VmmDriver.backup_disk``): the disk as it was at the instant the copy
began, while the guest runs on, crash-consistent as a power cut would leave it. A volume whose
instance is starting, stopping or migrating is refused (``InvalidState``): try again.

**Root volumes.** The root disk ``RunInstances`` gives an instance is already its own persistent
copy of the image, kept as the instance's disk 0 (an image of the store, removed with the
instance). It is shown as a volume without a record of its own (``roots``): its id is the
instance id's digits (``volumes.root_volume_id``), it is attached at ``/dev/vda`` and goes with
its instance. It can be snapshotted; it cannot be detached or deleted (``VolumeInUse``).

**What is left behind is finished.** A volume whose instance is removed is detached from it (or,
DeleteOnTermination, deleted) when the removal is published (``instance_changed``); ``reconcile``
(a supervised loop of the cluster manager) does the same for anything a restart or a lost
answer left: files still to make or remove, attachments half done, instances gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from tashi.clustermanager.accounts.auth import require_role
from tashi.clustermanager.database import Database
from tashi.clustermanager.events import InstanceStateChanged
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.clustermanager.volumes.attachments import (
    COLD,
    HOT,
    Attachments,
    Planned,
    instance_and_host,
    moved,
    visible,
)
from tashi.domain import tags as tag_rules
from tashi.domain import volumes as rules
from tashi.domain.clock import Clock
from tashi.domain.errors import InvalidInput, InvalidState, NotFound, TashiError
from tashi.domain.ids import InstanceId, UserId
from tashi.domain.launches import Launch
from tashi.domain.models import Host, Instance, Principal, Role
from tashi.domain.states import InstanceState
from tashi.domain.volumes import (
    Snapshot,
    SnapshotState,
    UnknownSnapshot,
    UnknownVolume,
    Volume,
    VolumeAction,
    VolumeInUse,
    VolumeState,
)
from tashi.images.store import ImageStore
from tashi.images.volumes import VolumeFiles, disk_path
from tashi.runtime.tasks import Background
from tashi.storage.contract import InstanceFilter, Transaction

log = logging.getLogger(__name__)

V, A, P = VolumeState, VolumeAction, SnapshotState
BACKUP_TIMEOUT = 3600.0  # seconds a node may take to copy a running VM's disk
RECONCILE_INTERVAL = 10.0  # seconds between two looks at what was left behind


@dataclass(frozen=True, slots=True)
class Listed:
    volume: Volume
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ListedSnapshot:
    snapshot: Snapshot
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RootVolume:
    """An instance's root disk, shown as a volume (see the module docstring)."""

    id: str
    instance: Instance
    size: int  # GiB
    zone: str | None  # as launched (None: the site's default)
    delete_on_termination: bool


@dataclass(frozen=True, slots=True)
class NewVolume:
    """What CreateVolume (or a RunInstances block device) asks for."""

    size: int | None  # GiB; None: the snapshot's
    zone: str
    volume_type: str = "gp2"
    snapshot_id: str | None = None


class VolumeService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        nodes: NodeGateway,
        store: ImageStore,
        *,
        files: VolumeFiles | None = None,
        backup_timeout: float = BACKUP_TIMEOUT,
    ) -> None:
        self._db = db
        self._clock = clock
        self._nodes = nodes
        self._store = store
        self.files = files or VolumeFiles(store.prefix)
        self.attachments = Attachments(db, clock, nodes)
        self._backup_timeout = backup_timeout
        self._work = Background("volume work")
        self._working: set[str] = set()  # volumes and snapshots whose file a task makes

    # --- volumes ------------------------------------------------------------------------

    async def create(
        self, caller: Principal, asked: NewVolume, tags: Mapping[str, str] | None = None
    ) -> Listed:
        """CreateVolume: recorded ``creating`` at once, its file made in the background."""
        require_role(caller, Role.user, Role.admin, doing="creating volumes")
        wanted = tag_rules.checked(tags or {})
        now = self._clock.now()

        def add(tx: Transaction) -> Volume:
            volume = self._new(tx, caller, caller.user_id, asked, now)
            tx.volumes.add(volume)
            if wanted:
                tx.volume_tags.put(volume.id, wanted)
            return volume

        volume = await self._db.write(add)
        self._spawn(volume.id, self._make(volume))
        return Listed(volume, wanted)

    def _new(
        self, tx: Transaction, caller: Principal, owner: UserId, asked: NewVolume, now: datetime
    ) -> Volume:
        size = asked.size
        if asked.snapshot_id is not None:
            snap = _visible_snapshot(tx, caller, asked.snapshot_id)
            if snap.state is not P.completed:
                raise InvalidState(f"The snapshot '{snap.id}' is {snap.state.value}.")
            size = snap.volume_size if size is None else size
            if size < snap.volume_size:
                raise InvalidInput(
                    f"Volume of {size}GiB is too small; minimum is {snap.volume_size}GiB."
                )
        if size is None:
            raise InvalidInput("The request must contain the parameter size or snapshotId")
        return Volume(
            id=rules.new_volume_id(),
            user_id=owner,
            size=rules.size(size),
            zone=asked.zone,
            volume_type=rules.volume_type(asked.volume_type),
            state=V.creating,
            created_at=now,
            snapshot_id=asked.snapshot_id,
        )

    async def _make(self, volume: Volume) -> None:
        try:
            if volume.snapshot_id is not None:
                await self.files.restore(volume.id, volume.snapshot_id, volume.size)
            else:
                await self.files.create(volume.id, volume.size)
        except TashiError as exc:
            if "exists already" not in exc.message:  # an earlier run made it: it is done
                log.warning("volume %s: its file could not be made: %s", volume.id, exc.message)
                await self._step(volume, A.failed)
                return
        await self._step(volume, A.made)

    async def _step(self, volume: Volume, action: VolumeAction) -> None:
        try:
            await self._db.write(lambda tx: self.attachments.step(tx, volume, action))
        except TashiError as exc:
            log.info("volume %s changed meanwhile: %s", volume.id, exc.message)

    async def make_for_launch(self, caller: Principal, asked: Sequence[NewVolume]) -> list[Volume]:
        """The volumes RunInstances' block devices ask for, made now (files and all) and
        ``available``, to be attached to the instances it makes (``attach_new``)."""
        require_role(caller, Role.user, Role.admin, doing="creating volumes")
        now = self._clock.now()
        made: list[Volume] = []
        try:
            for one in asked:
                volume = await self._db.write(
                    partial(self._added, caller=caller, asked=one, now=now)
                )
                made.append(volume)
                await self._make(volume)
            return await self._db.read(lambda tx: [_reread(tx, v.id) for v in made])
        except BaseException:
            await self.discard(made)
            raise

    def _added(
        self, tx: Transaction, *, caller: Principal, asked: NewVolume, now: datetime
    ) -> Volume:
        volume = self._new(tx, caller, caller.user_id, asked, now)
        tx.volumes.add(volume)
        return volume

    async def grow_root(self, uri: str, size: int) -> None:
        """Make an instance's new root disk (an image of the store) ``size`` GiB."""
        path = await asyncio.to_thread(self._store.path_of, uri)
        await self.files.grow(path, rules.size(size))

    def attach_new(self, tx: Transaction, inst: Instance, planned: Sequence[Planned]) -> Instance:
        return self.attachments.attach_new(tx, inst, planned)

    def attaching(
        self, planned: Sequence[Sequence[Planned]]
    ) -> Callable[[Transaction, Instance, int], Instance]:
        """``InstanceService.create_each``'s ``also``: the n-th new instance gets the n-th
        planned volumes (none when nothing is planned)."""

        def attach(tx: Transaction, inst: Instance, index: int) -> Instance:
            return self.attach_new(tx, inst, planned[index]) if planned else inst

        return attach

    async def discard(self, volumes: Sequence[Volume]) -> None:
        """Delete volumes ``make_for_launch`` made for instances that were not made."""
        for volume in volumes:
            try:
                found = await self._db.read(partial(_get, volume_id=volume.id))
                if found is not None and found.attachment is None:
                    await self._delete(found)
            except TashiError as exc:
                log.warning("could not remove the unused volume %s: %s", volume.id, exc.message)

    async def describe(self, caller: Principal) -> list[Listed]:
        """DescribeVolumes: the caller's volumes (an administrator's: all), by id."""

        def read(tx: Transaction) -> list[Listed]:
            owner = None if caller.is_trusted else caller.user_id
            found = tx.volumes.list(user_id=owner)
            tags = tx.volume_tags.of([v.id for v in found])
            return [Listed(v, tags.get(v.id, {})) for v in found]

        return await self._db.read(read)

    async def delete(self, caller: Principal, volume_id: str) -> None:
        """DeleteVolume: ``VolumeInUse`` while attached; its file and record go."""
        if rules.root_instance(volume_id) is not None:
            await self._root(caller, volume_id)  # UnknownVolume if it is not the caller's
            raise VolumeInUse(f"Volume {volume_id} is the root disk of its instance")

        def begin(tx: Transaction) -> Volume:
            volume = visible(tx, caller, volume_id)
            if volume.state in rules.ATTACHED:
                raise VolumeInUse(f"Volume {volume_id} is currently attached to an instance")
            return self.attachments.step(tx, volume, A.delete)

        await self._remove(await self._db.write(begin))

    async def _delete(self, volume: Volume) -> None:
        doomed = await self._db.write(lambda tx: self.attachments.step(tx, volume, A.delete))
        await self._remove(doomed)

    async def _remove(self, volume: Volume) -> None:
        """A ``deleting`` volume's file, then its record (reconcile retries a failure)."""
        try:
            await asyncio.to_thread(self.files.remove_volume, volume.id)
        except TashiError as exc:
            log.warning("volume %s: its file is not removed yet: %s", volume.id, exc.message)
            return
        await self._db.write(lambda tx: tx.volumes.remove(volume.id, V.deleting))
        log.info("volume %s deleted", volume.id)

    # --- attaching (attachments.py) -----------------------------------------------------

    async def attach(
        self, caller: Principal, volume_id: str, instance_id: InstanceId, device: str
    ) -> Volume:
        if rules.root_instance(volume_id) is not None:
            await self._root(caller, volume_id)
            raise VolumeInUse(f"{volume_id} is already attached to an instance")
        return await self.attachments.attach(caller, volume_id, instance_id, device)

    async def detach(
        self,
        caller: Principal,
        volume_id: str,
        *,
        instance_id: InstanceId | None = None,
        force: bool = False,
    ) -> Volume:
        if rules.root_instance(volume_id) is not None:
            await self._root(caller, volume_id)
            raise InvalidState(f"{volume_id} is the root disk of its instance: it stays")
        return await self.attachments.detach(
            caller, volume_id, instance_id=instance_id, force=force
        )

    # --- root volumes -------------------------------------------------------------------

    async def roots(self, caller: Principal) -> list[RootVolume]:
        """The root disks of the caller's instances (an administrator's: all) that are
        persistent, as volumes, by id."""
        owner = None if caller.is_trusted else caller.user_id
        found = await self._db.read(lambda tx: tx.instances.find(InstanceFilter(user_id=owner)))
        return await asyncio.to_thread(self._as_roots, found)

    def _as_roots(self, instances: Sequence[Instance]) -> list[RootVolume]:
        out = []
        for inst in instances:
            if not inst.disks or not inst.disks[0].persistent:
                continue
            launch = Launch.of(inst.hints)
            out.append(
                RootVolume(
                    id=rules.root_volume_id(inst.id),
                    instance=inst,
                    size=self._size_of(inst.disks[0].uri),
                    zone=launch.zone if launch else None,
                    delete_on_termination=launch is not None,
                )
            )
        return sorted(out, key=lambda r: r.id)

    def _size_of(self, uri: str) -> int:
        try:
            image = self._store.get(uri)
        except TashiError:
            return 1  # gone meanwhile, or being made
        return rules.size_gib(image.virtual_size or image.size)

    async def _root(self, caller: Principal, volume_id: str) -> Instance:
        iid = rules.root_instance(volume_id)
        assert iid is not None
        try:
            inst = await self._db.read(lambda tx: tx.instances.get(iid))
        except NotFound:
            raise UnknownVolume(volume_id) from None
        if not (caller.is_trusted or inst.user_id == caller.user_id):
            raise UnknownVolume(volume_id)
        if not inst.disks or not inst.disks[0].persistent:
            raise UnknownVolume(volume_id)
        return inst

    # --- snapshots ----------------------------------------------------------------------

    async def create_snapshot(
        self,
        caller: Principal,
        volume_id: str,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ListedSnapshot:
        """CreateSnapshot: ``pending`` at once, ``completed`` when the copy is whole."""
        require_role(caller, Role.user, Role.admin, doing="creating snapshots")
        wanted = tag_rules.checked(tags or {})
        text = rules.description(description)
        if rules.root_instance(volume_id) is not None:
            inst = await self._root(caller, volume_id)
            if inst.disks[0].copy:
                raise InvalidState(f"The root disk of {volume_id} is still being made.")
            owner, size = inst.user_id, (await asyncio.to_thread(self._size_of, inst.disks[0].uri))
            source, root_of = inst.disks[0].uri, inst.id
        else:
            volume = await self._db.read(lambda tx: visible(tx, caller, volume_id))
            await self._check_copyable(volume)
            owner, size, source, root_of = volume.user_id, volume.size, volume.uri, None
        now = self._clock.now()
        snap = Snapshot(rules.new_snapshot_id(), owner, volume_id, size, P.pending, now, text)

        def add(tx: Transaction) -> None:
            tx.snapshots.add(snap)
            if wanted:
                tx.snapshot_tags.put(snap.id, wanted)

        await self._db.write(add)
        self._spawn(snap.id, self._copy(snap, source, root_of))
        return ListedSnapshot(snap, wanted)

    async def _check_copyable(self, volume: Volume) -> None:
        if volume.state not in (V.available, V.attached):
            raise InvalidState(f"The volume '{volume.id}' is {volume.state.value}.")
        if volume.attachment is None:
            return
        iid = volume.attachment.instance_id
        inst, _ = await self._db.read(lambda tx: instance_and_host(tx, iid))
        if inst is not None and inst.state not in HOT | COLD:
            raise InvalidState(
                f"The instance of {volume.id} is {inst.state.name}: snapshot it once it runs or"
                " has stopped"
            )

    async def _copy(self, snap: Snapshot, uri: str, root_of: InstanceId | None) -> None:
        """Copy the disk ``uri`` into the snapshot's file: through its VM's node manager if a
        VM writes it (``blockdev-backup``), else directly."""
        try:
            running = await self._db.read(lambda tx: _running_with(tx, uri, root_of))
            if running is not None:
                inst, host = running
                await self._nodes.backup_disk(host, inst, uri, snap.id, self._backup_timeout)
            else:
                path = await asyncio.to_thread(disk_path, self._store, uri)
                await self.files.snapshot_of(path, snap.id)
        except TashiError as exc:
            log.warning("snapshot %s of %s failed: %s", snap.id, snap.volume_id, exc.message)
            await asyncio.to_thread(self.files.snapshot_part(snap.id).unlink, missing_ok=True)
            await self._snapshot_step(snap, P.error)
            return
        await self._snapshot_step(snap, P.completed)

    async def _snapshot_step(self, snap: Snapshot, new: SnapshotState) -> None:
        try:
            await self._db.write(lambda tx: tx.snapshots.transition(snap.id, P.pending, new))
        except TashiError as exc:
            log.info("snapshot %s changed meanwhile: %s", snap.id, exc.message)

    async def snapshots(self, caller: Principal) -> list[ListedSnapshot]:
        """DescribeSnapshots: the caller's snapshots (an administrator's: all), by id."""

        def read(tx: Transaction) -> list[ListedSnapshot]:
            owner = None if caller.is_trusted else caller.user_id
            found = tx.snapshots.list(user_id=owner)
            tags = tx.snapshot_tags.of([s.id for s in found])
            return [ListedSnapshot(s, tags.get(s.id, {})) for s in found]

        return await self._db.read(read)

    async def delete_snapshot(self, caller: Principal, snapshot_id: str) -> None:
        """DeleteSnapshot: its file and record; a ``pending`` one is refused (``InvalidState``)."""
        snap = await self._db.read(lambda tx: _visible_snapshot(tx, caller, snapshot_id))
        if snap.state is P.pending:
            raise InvalidState(f"The snapshot '{snapshot_id}' is pending; delete it once it ends")
        await asyncio.to_thread(self.files.remove_snapshot, snapshot_id)
        await self._db.write(lambda tx: tx.snapshots.remove(snapshot_id, snap.state))

    # --- what is left behind ------------------------------------------------------------

    async def instance_changed(self, event: InstanceStateChanged) -> None:
        """Hub handler: an instance that is gone leaves its volumes (settled in the
        background: the write that published this does not wait for files)."""
        if event.current is InstanceState.Exited:
            self._work.spawn(self.settle(event.instance_id))

    async def settle(self, instance_id: InstanceId) -> None:
        """The volumes of a removed instance: detached, or deleted (DeleteOnTermination)."""
        attached = await self._db.read(lambda tx: tx.volumes.list(instance_id=instance_id))
        for volume in attached:
            if volume.id in self.attachments.busy:
                continue
            try:
                freed = await self._db.write(partial(self._free, volume=volume, iid=instance_id))
                if freed is not None and freed.state is V.deleting:
                    await self._remove(freed)
            except TashiError as exc:
                log.warning(
                    "volume %s of gone instance %s: %s", volume.id, instance_id, exc.message
                )

    def _free(self, tx: Transaction, volume: Volume, iid: InstanceId) -> Volume | None:
        current = tx.volumes.get(volume.id)
        if current is None or current.attachment is None or current.attachment.instance_id != iid:
            return None
        try:
            tx.instances.get(iid)
            return None  # it is back (adopted by reconciliation): the attachment stands
        except NotFound:
            pass
        delete = current.attachment.delete_on_termination
        leave = {V.attaching: A.attach_failed, V.attached: A.detach, V.detaching: A.detached}
        free = moved(current, leave[current.state])
        if free.state is V.detaching:
            free = moved(free, A.detached)
        free = replace(free, attachment=None)
        if delete:
            free = moved(free, A.delete)
        return tx.volumes.transition(current.id, current.state, free)

    async def reconcile(self) -> None:
        """Finish what a restart or a lost answer left: files to make or remove, attachments
        half done, volumes of instances that are gone, copies that died with their process."""

        def read(tx: Transaction) -> tuple[list[Volume], list[Snapshot], set[InstanceId]]:
            volumes, snaps = tx.volumes.list(), tx.snapshots.list()
            wanted = {v.attachment.instance_id for v in volumes if v.attachment is not None}
            live = {i.id for i in tx.instances.find(InstanceFilter(ids=sorted(wanted)))}
            return volumes, snaps, live

        volumes, snaps, live = await self._db.read(read)
        gone: set[InstanceId] = set()
        for volume in volumes:
            if volume.id in self._working:
                continue
            if volume.state is V.creating:
                self._spawn(volume.id, self._make(volume))
            elif volume.state is V.deleting:
                await self._remove(volume)
            elif volume.attachment is not None and volume.attachment.instance_id not in live:
                gone.add(volume.attachment.instance_id)
            elif volume.state in (V.attaching, V.detaching):
                await self.attachments.finish(volume)
        for iid in sorted(gone):
            await self.settle(iid)
        for snap in snaps:
            if snap.state is P.pending and snap.id not in self._working:
                await self._snapshot_step(snap, P.error)  # its copy ended with its process

    def _spawn(self, key: str, work: Coroutine[object, object, None]) -> None:
        self._working.add(key)

        async def run() -> None:
            try:
                await work
            finally:
                self._working.discard(key)

        self._work.spawn(run())

    async def wait(self) -> None:
        """Until the background work ends (tests)."""
        await self._work.wait()

    async def aclose(self) -> None:
        await self._work.cancel()


def _get(tx: Transaction, volume_id: str) -> Volume | None:
    return tx.volumes.get(volume_id)


def _reread(tx: Transaction, volume_id: str) -> Volume:
    found = tx.volumes.get(volume_id)
    if found is None or found.state is not V.available:
        raise InvalidState(f"volume {volume_id} could not be made")
    return found


def _visible_snapshot(tx: Transaction, caller: Principal, snapshot_id: str) -> Snapshot:
    found = tx.snapshots.get(snapshot_id)
    if found is None or not (caller.is_trusted or found.user_id == caller.user_id):
        raise UnknownSnapshot(snapshot_id)
    return found


def _running_with(
    tx: Transaction, uri: str, root_of: InstanceId | None
) -> tuple[Instance, Host] | None:
    """The running instance (and its host) whose VM has the disk ``uri`` now, if any: the
    volume's instance, or ``root_of`` for a root disk."""
    iid = root_of
    volume_id = rules.volume_of(uri)
    if volume_id is not None:
        volume = tx.volumes.get(volume_id)
        iid = None if volume is None or volume.attachment is None else volume.attachment.instance_id
    if iid is None:
        return None
    inst, host = instance_and_host(tx, iid)
    if inst is None or host is None or inst.state not in HOT:
        return None
    return (inst, host) if any(d.uri == uri for d in inst.disks) else None
