"""The volume and snapshot repositories over SQL.

Implements ``VolumeRepository`` and ``SnapshotRepository`` of ``storage/contract.py`` on the
``volumes`` and ``snapshots`` tables of ``tables.py`` (their tags: ``keypairs.SqlTags`` over
``volume_tags`` and ``snapshot_tags``). A state change is one ``UPDATE … WHERE id = :id AND
state = :expected``: no row means ``StateConflict`` (or ``NotFound``), never an overwrite. One
volume per attachment point of an instance is ``uq_volumes_attachment``'s, race-free. Errors
pass through ``db.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tashi.domain.errors import AlreadyExists, InvalidInput, NotFound, StateConflict, TashiError
from tashi.domain.ids import InstanceId, UserId
from tashi.domain.volumes import Attachment, Snapshot, SnapshotState, Volume, VolumeState
from tashi.storage.shared import checked_snapshot, checked_volume
from tashi.storage.sql.db import Db, Explain, Violation
from tashi.storage.sql.tables import snapshots as t_snaps
from tashi.storage.sql.tables import volumes as t_vols

_VOLUME_COLUMNS = (
    t_vols.c.id,
    t_vols.c.user_id,
    t_vols.c.size_gib,
    t_vols.c.zone,
    t_vols.c.volume_type,
    t_vols.c.state,
    t_vols.c.created_at,
    t_vols.c.snapshot_id,
    t_vols.c.instance_id,
    t_vols.c.device,
    t_vols.c.attached_at,
    t_vols.c.delete_on_termination,
)
_SNAPSHOT_COLUMNS = (
    t_snaps.c.id,
    t_snaps.c.user_id,
    t_snaps.c.volume_id,
    t_snaps.c.volume_size_gib,
    t_snaps.c.state,
    t_snaps.c.started_at,
    t_snaps.c.description,
)


def _volume(row: Sequence[Any]) -> Volume:
    vid, user_id, size, zone, kind, state, created, snapshot, iid, device, since, delete = row
    attachment = None
    if iid is not None:
        attachment = Attachment(InstanceId(int(iid)), str(device), since, bool(delete))
    return Volume(
        id=str(vid),
        user_id=UserId(int(user_id)),
        size=int(size),
        zone=str(zone),
        volume_type=str(kind),
        state=VolumeState(state),
        created_at=created,
        snapshot_id=None if snapshot is None else str(snapshot),
        attachment=attachment,
    )


def _volume_row(volume: Volume) -> dict[str, Any]:
    point = volume.attachment
    return {
        "id": volume.id,
        "user_id": volume.user_id,
        "size_gib": volume.size,
        "zone": volume.zone,
        "volume_type": volume.volume_type,
        "state": volume.state.value,
        "snapshot_id": volume.snapshot_id,
        "created_at": volume.created_at,
        "instance_id": None if point is None else point.instance_id,
        "device": None if point is None else point.device,
        "device_index": None if point is None else point.index,
        "attached_at": None if point is None else point.attached_at,
        "delete_on_termination": False if point is None else point.delete_on_termination,
    }


def _explain(volume: Volume) -> Explain:
    def explain(v: Violation) -> TashiError:
        if v.foreign_key:
            return NotFound(f"user {volume.user_id} does not exist")
        if v.constraint == "pk_volumes":
            return AlreadyExists(f"the volume {volume.id} exists already")
        point = volume.attachment
        where = f"{point.instance_id} at {point.device}" if point else "?"
        return AlreadyExists(f"instance {where} has a volume already")

    return explain


class SqlVolumes:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, volume: Volume) -> None:
        checked_volume(volume)
        self._db.execute(sa.insert(t_vols), _volume_row(volume), explain=_explain(volume))

    def get(self, volume_id: str) -> Volume | None:
        query = sa.select(*_VOLUME_COLUMNS).where(t_vols.c.id == volume_id)
        row = self._db.execute(query).one_or_none()
        return None if row is None else _volume(row)

    def list(
        self, *, user_id: UserId | None = None, instance_id: InstanceId | None = None
    ) -> list[Volume]:
        query = sa.select(*_VOLUME_COLUMNS)
        if user_id is not None:
            query = query.where(t_vols.c.user_id == user_id)
        if instance_id is not None:
            query = query.where(t_vols.c.instance_id == instance_id)
        return [_volume(r) for r in self._db.execute(query.order_by(t_vols.c.id))]

    def transition(self, volume_id: str, expected: VolumeState, volume: Volume) -> Volume:
        checked_volume(volume)
        if volume.id != volume_id:
            raise InvalidInput("a volume keeps its id and owner")
        row = _volume_row(volume)
        del row["id"]
        cas = (
            sa.update(t_vols)
            .where(
                t_vols.c.id == volume_id,
                t_vols.c.state == expected.value,
                t_vols.c.user_id == volume.user_id,
            )
            .values(**row)
        )
        if self._db.execute(cas, explain=_explain(volume)).rowcount == 0:
            raise self._cas_failure(volume_id, expected, volume.user_id)
        return volume

    def remove(self, volume_id: str, expected: VolumeState) -> None:
        # its tags go by the cascade (SQLite's foreign keys are on: engine.py)
        cas = sa.delete(t_vols).where(t_vols.c.id == volume_id, t_vols.c.state == expected.value)
        if self._db.execute(cas).rowcount == 0:
            raise self._cas_failure(volume_id, expected, None)

    def _cas_failure(
        self, volume_id: str, expected: VolumeState, owner: UserId | None
    ) -> TashiError:
        found = self.get(volume_id)
        if found is None:
            return NotFound(f"no volume {volume_id}")
        if owner is not None and found.user_id != owner:
            return InvalidInput("a volume keeps its id and owner")
        return StateConflict(f"volume {volume_id} is {found.state.value}, not {expected.value}")


def _snapshot(row: Sequence[Any]) -> Snapshot:
    sid, user_id, volume_id, size, state, started, description = row
    return Snapshot(
        id=str(sid),
        user_id=UserId(int(user_id)),
        volume_id=str(volume_id),
        volume_size=int(size),
        state=SnapshotState(state),
        started_at=started,
        description=str(description),
    )


class SqlSnapshots:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, snapshot: Snapshot) -> None:
        checked_snapshot(snapshot)

        def explain(v: Violation) -> TashiError:
            if v.foreign_key:
                return NotFound(f"user {snapshot.user_id} does not exist")
            return AlreadyExists(f"the snapshot {snapshot.id} exists already")

        row = {
            "id": snapshot.id,
            "user_id": snapshot.user_id,
            "volume_id": snapshot.volume_id,
            "volume_size_gib": snapshot.volume_size,
            "state": snapshot.state.value,
            "description": snapshot.description,
            "started_at": snapshot.started_at,
        }
        self._db.execute(sa.insert(t_snaps), row, explain=explain)

    def get(self, snapshot_id: str) -> Snapshot | None:
        query = sa.select(*_SNAPSHOT_COLUMNS).where(t_snaps.c.id == snapshot_id)
        row = self._db.execute(query).one_or_none()
        return None if row is None else _snapshot(row)

    def list(
        self, *, user_id: UserId | None = None, volume_id: str | None = None
    ) -> list[Snapshot]:
        query = sa.select(*_SNAPSHOT_COLUMNS)
        if user_id is not None:
            query = query.where(t_snaps.c.user_id == user_id)
        if volume_id is not None:
            query = query.where(t_snaps.c.volume_id == volume_id)
        return [_snapshot(r) for r in self._db.execute(query.order_by(t_snaps.c.id))]

    def transition(self, snapshot_id: str, expected: SnapshotState, new: SnapshotState) -> Snapshot:
        cas = (
            sa.update(t_snaps)
            .where(t_snaps.c.id == snapshot_id, t_snaps.c.state == expected.value)
            .values(state=new.value)
        )
        if self._db.execute(cas).rowcount == 0:
            raise self._cas_failure(snapshot_id, expected)
        found = self.get(snapshot_id)
        assert found is not None  # updated in this transaction
        return found

    def remove(self, snapshot_id: str, expected: SnapshotState) -> None:
        cas = sa.delete(t_snaps).where(
            t_snaps.c.id == snapshot_id, t_snaps.c.state == expected.value
        )
        if self._db.execute(cas).rowcount == 0:
            raise self._cas_failure(snapshot_id, expected)

    def _cas_failure(self, snapshot_id: str, expected: SnapshotState) -> TashiError:
        found = self.get(snapshot_id)
        if found is None:
            return NotFound(f"no snapshot {snapshot_id}")
        return StateConflict(f"snapshot {snapshot_id} is {found.state.value}, not {expected.value}")
