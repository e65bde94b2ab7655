"""The volume rules of ``domain/volumes.py``: the state table (walked whole), EC2's ids and
devices, a volume as a disk."""

from __future__ import annotations

import pytest

from tashi.domain.errors import InvalidInput, InvalidState
from tashi.domain.volumes import (
    ATTACHED,
    VOLUME_TRANSITIONS,
    DeviceInUse,
    VolumeAction,
    VolumeState,
    device_index,
    disk_uri,
    ec2_state,
    free_index,
    is_snapshot_id,
    is_volume_id,
    new_snapshot_id,
    new_volume_id,
    next_volume_state,
    root_instance,
    root_volume_id,
    size,
    size_gib,
    volume_of,
    volume_type,
)

V, A = VolumeState, VolumeAction


@pytest.mark.parametrize("state", list(VolumeState))
@pytest.mark.parametrize("action", list(VolumeAction))
def test_every_state_and_action_either_leads_somewhere_or_is_refused(
    state: VolumeState, action: VolumeAction
) -> None:
    expected = VOLUME_TRANSITIONS.get((state, action))
    if expected is None:
        with pytest.raises(InvalidState):
            next_volume_state(state, action)
    else:
        assert next_volume_state(state, action) is expected


def test_an_attachment_goes_round_and_a_volume_in_use_cannot_be_deleted() -> None:
    state = V.available
    for action in (A.attach, A.attached, A.detach, A.detached):
        state = next_volume_state(state, action)
    assert state is V.available
    for held in ATTACHED:
        with pytest.raises(InvalidState):
            next_volume_state(held, A.delete)
    assert [ec2_state(s) for s in (V.attaching, V.attached, V.available)] == [
        ("in-use", "attaching"),
        ("in-use", "attached"),
        ("available", None),
    ]


def test_ids_are_ec2s_and_never_a_root_volumes() -> None:
    made = {new_volume_id() for _ in range(200)}
    assert all(is_volume_id(v) and root_instance(v) is None for v in made)
    assert is_snapshot_id(new_snapshot_id())
    assert root_volume_id(42) == "vol-0000000000000002a"
    assert root_instance("vol-0000000000000002a") == 42
    assert not is_volume_id("vol-123") and not is_volume_id("vol-0000000000000002A")


def test_devices_are_their_letter() -> None:
    assert [device_index(d) for d in ("/dev/sdb", "/dev/xvdf", "/dev/vdf", "/dev/sdz")] == [
        1,
        5,
        5,
        25,
    ]
    for bad in ("/dev/sda", "/dev/sda1", "/dev/hdf", "sdf", "/dev/sdf1"):
        with pytest.raises(InvalidInput):
            device_index(bad)
    assert free_index([1, 2], "/dev/sdf") == 5
    with pytest.raises(DeviceInUse):
        free_index([5], "/dev/xvdf")


def test_a_volume_is_a_disk_no_image_can_be_named() -> None:
    uri = disk_uri("vol-a0000000000000001")
    assert uri == "volume:vol-a0000000000000001"
    assert volume_of(uri) == "vol-a0000000000000001"
    assert volume_of("tashi-tiny.qcow2") is None
    with pytest.raises(InvalidInput):
        volume_of("volume:../etc/passwd")


def test_sizes_and_types() -> None:
    assert (size(1), size(16384), size_gib(1), size_gib(2**30), size_gib(2**30 + 1)) == (
        1,
        16384,
        1,
        1,
        2,
    )
    for bad in (0, 16385):
        with pytest.raises(InvalidInput):
            size(bad)
    assert (volume_type(None), volume_type("gp3")) == ("gp2", "gp3")
    with pytest.raises(InvalidInput):
        volume_type("magnetic")
