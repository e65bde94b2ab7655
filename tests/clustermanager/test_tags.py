"""Instance tags are hints saved by compare-and-swap (``clustermanager/tags.py``): a state
change that lands between the tag service's read and its save is neither lost nor loses the
tags (the unit runs again on ``StateConflict``), and a state change that replaces the hints from
a read made before the tags were saved keeps them (``InstanceService._move``,
``hints.rebased``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tashi.clustermanager.service import ClusterService, build_service
from tashi.domain.errors import StateConflict
from tashi.domain.hints import rebased
from tashi.domain.ids import NetworkId, UserId
from tashi.domain.launches import tags
from tashi.domain.models import Instance, Principal, Role
from tashi.domain.operations import DiskRequest, VmRequest
from tashi.domain.states import Action, InstanceState
from tashi.domain.tags import Kind, Target
from tashi.storage import memory
from tashi.storage.memory import MemoryStore
from tests.api.conftest import make_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ClusterService, MemoryStore, Principal]]:
    settings = make_settings(tmp_path)
    settings.cluster_manager.state_dir.mkdir(mode=0o700)
    store = MemoryStore()
    service = build_service(settings, store)
    with store.transaction() as tx:
        tx.networks.add(NetworkId(1), "default")
        user = tx.users.add("alice", role=Role.user, priority=0, password_hash="h", now=T0)
    yield service, store, Principal(UserId(user.id), "alice", Role.user)
    asyncio.run(service.aclose())
    service.close()


def _made(service: ClusterService, alice: Principal) -> Instance:
    request = VmRequest(name="vm", disks=[DiskRequest(uri="base.qcow2")], hints={"own": "1"})
    return asyncio.run(service.instances.create_vm(alice, request))


def test_a_state_change_between_read_and_save_loses_neither(
    cluster: tuple[ClusterService, MemoryStore, Principal], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, store, alice = cluster
    inst = _made(service, alice)
    real = memory._Instances.transition
    raced: list[InstanceState] = []

    def transition(
        self: Any, instance_id: Any, expected: InstanceState, new: Any, **kw: Any
    ) -> Any:
        if not raced and expected is new:  # the tag save: the scheduler holds it first
            held = replace(store._tables.instances[instance_id], state=InstanceState.Held)
            store._tables.instances[instance_id] = held  # committed by "another unit"
            raced.append(held.state)
            raise StateConflict(f"instance {instance_id} is Held, not {expected.name}")
        return real(self, instance_id, expected, new, **kw)

    monkeypatch.setattr(memory._Instances, "transition", transition)
    target = Target(Kind.instance, str(inst.id))
    asyncio.run(service.tags.create(alice, [target], {"Name": "web"}))
    after = asyncio.run(service.instances.get(alice, str(inst.id)))
    assert raced == [InstanceState.Held]
    assert after.state is InstanceState.Held  # the other unit's state is kept
    assert tags(after.hints) == {"Name": "web"} and after.hints["own"] == "1"


def test_a_move_from_an_older_read_keeps_tags_saved_since(
    cluster: tuple[ClusterService, MemoryStore, Principal],
) -> None:
    service, _, alice = cluster
    stale = _made(service, alice)  # read before the tags were saved
    target = Target(Kind.instance, str(stale.id))
    asyncio.run(service.tags.create(alice, [target], {"Name": "web", "gone": "soon"}))
    asyncio.run(service.tags.delete(alice, [target], {"gone": None}))
    wanted = {**stale.hints, "own": "2", "added": "x"}
    moved = asyncio.run(service.instances._move(stale, Action.hold, reason="r", hints=wanted))
    assert moved.state is InstanceState.Held
    assert tags(moved.hints) == {"Name": "web"}
    assert (moved.hints["own"], moved.hints["added"]) == ("2", "x")


def test_rebased_applies_a_writers_changes_over_what_was_saved_meanwhile() -> None:
    read = {"a": "1", "b": "2", "t": "old"}
    wanted = {"a": "1", "c": "3", "t": "old"}  # b removed, c added, t untouched
    stored = {"a": "1", "b": "2", "t": "new", "u": "u"}  # t changed, u added meanwhile
    assert rebased(read, wanted, stored) == {"a": "1", "c": "3", "t": "new", "u": "u"}
    assert rebased(read, wanted, read) == wanted
    assert rebased({"a": "1"}, {"a": "1"}, {}) == {}  # removed meanwhile stays removed
