"""The store contract, continued: volumes and snapshots (``tx.volumes``, ``tx.snapshots``) and
their tags (``tx.volume_tags``, ``tx.snapshot_tags``).

Part of the one contract suite (memory, SQLite, PostgreSQL, MariaDB): records read back as they
were written; states change by compare-and-swap only; one volume per attachment point of an
instance, race-free; users with volumes or snapshots stay; tags go with their resource; a
failed unit leaves nothing behind.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound, StateConflict
from tashi.domain.ids import InstanceId, UserId
from tashi.domain.volumes import Attachment, Snapshot, SnapshotState, Volume, VolumeState
from tashi.storage.contract import Store
from tests.storage.test_contract import T0, seed
from tests.storage.test_contract_key_pairs import bob

V = VolumeState
I7, I8 = InstanceId(7), InstanceId(8)


def volume(n: int, user: UserId, state: VolumeState = V.available, **fields: object) -> Volume:
    made = Volume(
        id=f"vol-{n:017x}".replace("vol-0", "vol-a", 1),
        user_id=user,
        size=n,
        zone="tashi-1a",
        volume_type="gp3",
        state=state,
        created_at=T0 + timedelta(minutes=n),
    )
    return replace(made, **fields)  # type: ignore[arg-type]


def at(instance: InstanceId, device: str, delete: bool = False) -> Attachment:
    return Attachment(instance, device, T0 + timedelta(hours=1), delete)


def snapshot(n: int, user: UserId, of: str = "vol-a0000000000000001") -> Snapshot:
    return Snapshot(
        id=f"snap-b{n:016x}",
        user_id=user,
        volume_id=of,
        volume_size=3,
        state=SnapshotState.pending,
        started_at=T0 + timedelta(seconds=n),
        description=f"copy {n}",
    )


def test_a_volume_reads_back_and_lists_by_owner_and_instance(store: Store) -> None:
    alice = seed(store)
    other = bob(store)
    attached = volume(2, alice, V.attached, attachment=at(I7, "/dev/sdf", True))
    with store.transaction() as tx:
        tx.volumes.add(volume(1, alice, snapshot_id="snap-b0000000000000009"))
        tx.volumes.add(attached)
        tx.volumes.add(volume(3, other, V.creating))
    with store.transaction(write=False) as tx:
        assert tx.volumes.get(attached.id) == attached
        assert tx.volumes.get(volume(1, alice).id) == volume(
            1, alice, snapshot_id="snap-b0000000000000009"
        )
        assert tx.volumes.get("vol-a0000000000000099") is None
        assert [v.size for v in tx.volumes.list()] == [1, 2, 3]
        assert [v.size for v in tx.volumes.list(user_id=alice)] == [1, 2]
        assert tx.volumes.list(instance_id=I7) == [attached]
        assert tx.volumes.list(user_id=other, instance_id=I7) == []


def test_volumes_need_their_user_and_a_fresh_id(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.volumes.add(volume(1, alice))
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.volumes.add(volume(1, alice))
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.volumes.add(volume(2, UserId(9999)))
    for bad in (
        volume(3, alice, zone="z" * 65),
        volume(3, alice, V.attached),  # attached without an attachment
        volume(3, alice, attachment=at(I7, "/dev/sdf")),  # available with one
        volume(3, alice, V.attached, attachment=at(I7, "/dev/sda")),  # the root's place
    ):
        with pytest.raises(InvalidInput), store.transaction() as tx:
            tx.volumes.add(bad)
    with store.transaction(write=False) as tx:
        assert [v.size for v in tx.volumes.list()] == [1]


def test_one_volume_per_attachment_point_of_an_instance(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.volumes.add(volume(1, alice, V.attached, attachment=at(I7, "/dev/sdf")))
        tx.volumes.add(volume(2, alice, V.attaching, attachment=at(I7, "/dev/sdg")))
        tx.volumes.add(volume(3, alice, V.attached, attachment=at(I8, "/dev/sdf")))
        tx.volumes.add(volume(4, alice))
    with pytest.raises(AlreadyExists), store.transaction() as tx:  # xvdf is sdf's point
        tx.volumes.add(volume(5, alice, V.attaching, attachment=at(I7, "/dev/xvdf")))
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.volumes.transition(
            volume(4, alice).id,
            V.available,
            volume(4, alice, V.attaching, attachment=at(I7, "/dev/vdg")),
        )
    with store.transaction() as tx:  # free once the other one has left it
        tx.volumes.transition(volume(1, alice).id, V.attached, volume(1, alice))
        tx.volumes.transition(
            volume(4, alice).id,
            V.available,
            volume(4, alice, V.attaching, attachment=at(I7, "/dev/xvdf")),
        )
    with store.transaction(write=False) as tx:
        assert [v.size for v in tx.volumes.list(instance_id=I7)] == [2, 4]


def test_volume_states_change_by_compare_and_swap(store: Store) -> None:
    alice = seed(store)
    vid = volume(1, alice).id
    with store.transaction() as tx:
        tx.volumes.add(volume(1, alice, V.creating))
        made = tx.volumes.transition(vid, V.creating, volume(1, alice))
    assert made == volume(1, alice)
    with pytest.raises(StateConflict), store.transaction() as tx:
        tx.volumes.transition(vid, V.creating, volume(1, alice, V.error))
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.volumes.transition(volume(77, alice).id, V.available, volume(77, alice))
    with pytest.raises(InvalidInput), store.transaction() as tx:  # it keeps its id
        tx.volumes.transition(vid, V.available, volume(2, alice))
    stranger = bob(store)
    with pytest.raises(InvalidInput), store.transaction() as tx:  # it keeps its owner
        tx.volumes.transition(vid, V.available, volume(1, stranger))
    with pytest.raises(StateConflict), store.transaction() as tx:
        tx.volumes.remove(vid, V.deleting)
    with store.transaction() as tx:
        tx.volumes.transition(vid, V.available, volume(1, alice, V.deleting))
        tx.volumes.remove(vid, V.deleting)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.volumes.remove(vid, V.deleting)


def test_two_racing_attaches_one_wins(store: Store) -> None:
    alice = seed(store)
    vid = volume(1, alice).id
    with store.transaction() as tx:
        tx.volumes.add(volume(1, alice))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def attach(instance: InstanceId) -> None:
        barrier.wait()
        try:
            with store.transaction() as tx:
                tx.volumes.transition(
                    vid,
                    V.available,
                    volume(1, alice, V.attaching, attachment=at(instance, "/dev/sdf")),
                )
            outcomes.append("won")
        except StateConflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=attach, args=(i,)) for i in (I7, I8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "won"]


def test_snapshots_read_back_change_state_and_outlive_their_volume(store: Store) -> None:
    alice = seed(store)
    other = bob(store)
    with store.transaction() as tx:
        tx.volumes.add(volume(1, alice))
        tx.snapshots.add(snapshot(1, alice))
        tx.snapshots.add(snapshot(2, other, of="vol-a0000000000000002"))
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.snapshots.add(snapshot(1, alice))
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.snapshots.add(snapshot(3, UserId(9999)))
    with pytest.raises(InvalidInput), store.transaction() as tx:
        tx.snapshots.add(replace(snapshot(4, alice), description="d" * 256))
    with store.transaction() as tx:
        done = tx.snapshots.transition(
            snapshot(1, alice).id, SnapshotState.pending, SnapshotState.completed
        )
        tx.volumes.transition(volume(1, alice).id, V.available, volume(1, alice, V.deleting))
        tx.volumes.remove(volume(1, alice).id, V.deleting)
    assert done == replace(snapshot(1, alice), state=SnapshotState.completed)
    with pytest.raises(StateConflict), store.transaction() as tx:
        tx.snapshots.transition(snapshot(1, alice).id, SnapshotState.pending, SnapshotState.error)
    with store.transaction(write=False) as tx:
        assert tx.snapshots.get(snapshot(1, alice).id) == done
        assert tx.snapshots.get("snap-b0000000000000099") is None
        assert [s.id for s in tx.snapshots.list(user_id=alice)] == [snapshot(1, alice).id]
        assert [s.id for s in tx.snapshots.list(volume_id="vol-a0000000000000002")] == [
            snapshot(2, other).id
        ]
        assert len(tx.snapshots.list()) == 2
    with store.transaction() as tx:
        tx.snapshots.remove(snapshot(1, alice).id, SnapshotState.completed)
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.snapshots.remove(snapshot(1, alice).id, SnapshotState.completed)


def test_users_with_volumes_or_snapshots_stay(store: Store) -> None:
    alice = seed(store)
    other = bob(store)
    with store.transaction() as tx:
        tx.volumes.add(volume(1, alice))
        tx.snapshots.add(snapshot(1, other))
    for who in (alice, other):
        with pytest.raises(InvalidState), store.transaction() as tx:
            tx.users.remove(who)
    with store.transaction() as tx:
        tx.snapshots.remove(snapshot(1, other).id, SnapshotState.pending)
        tx.users.remove(other)


def test_tags_go_with_their_volume_or_snapshot(store: Store) -> None:
    alice = seed(store)
    with store.transaction() as tx:
        tx.volumes.add(volume(1, alice))
        tx.volumes.add(volume(2, alice))
        tx.snapshots.add(snapshot(1, alice))
        tx.volume_tags.put(volume(1, alice).id, {"Name": "data", "team": ""})
        tx.volume_tags.put(volume(2, alice).id, {"Name": "logs"})
        tx.snapshot_tags.put(snapshot(1, alice).id, {"Name": "nightly"})
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.volume_tags.put("vol-a0000000000000077", {"a": "1"})
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.snapshot_tags.put("snap-b0000000000000077", {"a": "1"})
    with store.transaction() as tx:
        tx.volumes.transition(volume(1, alice).id, V.available, volume(1, alice, V.deleting))
        tx.volumes.remove(volume(1, alice).id, V.deleting)
        tx.snapshots.remove(snapshot(1, alice).id, SnapshotState.pending)
    with store.transaction(write=False) as tx:
        assert tx.volume_tags.of() == {volume(2, alice).id: {"Name": "logs"}}
        assert tx.snapshot_tags.of() == {}


def test_a_failed_unit_leaves_no_volume_behind(store: Store) -> None:
    alice = seed(store)

    def fail() -> None:
        with store.transaction() as tx:
            tx.volumes.add(volume(1, alice))
            tx.volume_tags.put(volume(1, alice).id, {"a": "1"})
            tx.snapshots.add(snapshot(1, alice))
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        fail()
    with store.transaction(write=False) as tx:
        assert tx.volumes.list() == []
        assert tx.snapshots.list() == []
        assert tx.volume_tags.of() == {}
