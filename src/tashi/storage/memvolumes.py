"""The in-memory store's volumes and snapshots (``memory.py``; the contracts are
``contract.VolumeRepository`` and ``contract.SnapshotRepository``; their tags are
``memkeypairs.MemoryTags`` over ``volume_tags`` and ``snapshot_tags``).

Records are immutable and kept one per id in dicts of ``memtables.Tables``, so a write
transaction's copy of the tables (``memtables.DICTS``) is all it takes to roll one back.
"""

from __future__ import annotations

from dataclasses import replace

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound, StateConflict
from tashi.domain.ids import InstanceId, UserId
from tashi.domain.volumes import Snapshot, SnapshotState, Volume, VolumeState
from tashi.storage.memtables import Tables, aware
from tashi.storage.shared import checked_snapshot, checked_volume


class MemoryVolumes:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(self, volume: Volume) -> None:
        self._check(volume)
        if volume.id in self._t.volumes:
            raise AlreadyExists(f"the volume {volume.id} exists already")
        self._t.volumes[volume.id] = volume

    def _check(self, volume: Volume) -> None:
        checked_volume(volume)
        aware(volume.created_at)
        if volume.user_id not in self._t.users:
            raise NotFound(f"user {volume.user_id} does not exist")
        point = volume.attachment
        if point is None:
            return
        aware(point.attached_at)
        for other in self._t.volumes.values():
            there = other.attachment
            if (
                other.id != volume.id
                and there is not None
                and (there.instance_id, there.index) == (point.instance_id, point.index)
            ):
                raise AlreadyExists(
                    f"instance {point.instance_id} has a volume at {point.device} already"
                )

    def get(self, volume_id: str) -> Volume | None:
        return self._t.volumes.get(volume_id)

    def list(
        self, *, user_id: UserId | None = None, instance_id: InstanceId | None = None
    ) -> list[Volume]:
        return [
            v
            for _, v in sorted(self._t.volumes.items())
            if user_id in (None, v.user_id)
            and (
                instance_id is None
                or (v.attachment is not None and v.attachment.instance_id == instance_id)
            )
        ]

    def transition(self, volume_id: str, expected: VolumeState, volume: Volume) -> Volume:
        if volume.id != volume_id:
            raise InvalidInput("a volume keeps its id and owner")
        stored = self._stored(volume_id, expected)
        if volume.user_id != stored.user_id:
            raise InvalidInput("a volume keeps its id and owner")
        self._check(volume)
        self._t.volumes[volume_id] = volume
        return volume

    def remove(self, volume_id: str, expected: VolumeState) -> None:
        self._stored(volume_id, expected)
        del self._t.volumes[volume_id]
        self._t.volume_tags = {k: v for k, v in self._t.volume_tags.items() if k[0] != volume_id}

    def _stored(self, volume_id: str, expected: VolumeState) -> Volume:
        stored = self._t.volumes.get(volume_id)
        if stored is None:
            raise NotFound(f"no volume {volume_id}")
        if stored.state is not expected:
            raise StateConflict(f"volume {volume_id} is {stored.state.value}, not {expected.value}")
        return stored


class MemorySnapshots:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(self, snapshot: Snapshot) -> None:
        checked_snapshot(snapshot)
        aware(snapshot.started_at)
        if snapshot.user_id not in self._t.users:
            raise NotFound(f"user {snapshot.user_id} does not exist")
        if snapshot.id in self._t.snapshots:
            raise AlreadyExists(f"the snapshot {snapshot.id} exists already")
        self._t.snapshots[snapshot.id] = snapshot

    def get(self, snapshot_id: str) -> Snapshot | None:
        return self._t.snapshots.get(snapshot_id)

    def list(
        self, *, user_id: UserId | None = None, volume_id: str | None = None
    ) -> list[Snapshot]:
        return [
            s
            for _, s in sorted(self._t.snapshots.items())
            if user_id in (None, s.user_id) and volume_id in (None, s.volume_id)
        ]

    def transition(self, snapshot_id: str, expected: SnapshotState, new: SnapshotState) -> Snapshot:
        stored = self._stored(snapshot_id, expected)
        changed = replace(stored, state=new)
        self._t.snapshots[snapshot_id] = changed
        return changed

    def remove(self, snapshot_id: str, expected: SnapshotState) -> None:
        self._stored(snapshot_id, expected)
        del self._t.snapshots[snapshot_id]
        self._t.snapshot_tags = {
            k: v for k, v in self._t.snapshot_tags.items() if k[0] != snapshot_id
        }

    def _stored(self, snapshot_id: str, expected: SnapshotState) -> Snapshot:
        stored = self._t.snapshots.get(snapshot_id)
        if stored is None:
            raise NotFound(f"no snapshot {snapshot_id}")
        if stored.state is not expected:
            raise StateConflict(
                f"snapshot {snapshot_id} is {stored.state.value}, not {expected.value}"
            )
        return stored


def check_user_removal(t: Tables, user_id: UserId, name: str) -> None:
    """A user who still has volumes or snapshots stays (their files are in the store)."""
    volumes = sum(1 for v in t.volumes.values() if v.user_id == user_id)
    snapshots = sum(1 for s in t.snapshots.values() if s.user_id == user_id)
    if volumes or snapshots:
        raise InvalidState(
            f"user {name!r} still owns {volumes} volume(s) and {snapshots} snapshot(s)"
        )
