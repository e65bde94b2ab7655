"""``VolumeService`` over the memory and SQLite stores, real volume files (qemu-img) and scripted
node managers (``fakenodes.FakeNodes`` with the volume calls recorded here).

Volumes are made in the background and answered ``creating``; attached to a running instance
they are hot-plugged by its node (``attaching`` until it answers), to a stopped one at once;
refusals are undone, lost answers finished by ``reconcile``; a guest that holds on keeps its
volume unless forced. A removed instance frees its volumes (or deletes them:
DeleteOnTermination). Snapshots copy a disk nobody writes directly and a running VM's through
its node. Users see their own only; root disks show as volumes.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tashi.clustermanager.volumes.attachments import Planned
from tashi.clustermanager.volumes.service import NewVolume, VolumeService
from tashi.domain.errors import (
    InvalidInput,
    InvalidState,
    NotFound,
    TashiError,
    Unanswered,
)
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import DiskConfig, Host, Instance, Principal, Role
from tashi.domain.operations import DiskRequest, VmRequest
from tashi.domain.states import InstanceState
from tashi.domain.volumes import (
    MAX_ATTACHED,
    AttachmentLimit,
    DeviceInUse,
    InstanceNotReady,
    SnapshotState,
    UnknownSnapshot,
    UnknownVolume,
    VolumeInUse,
    VolumeState,
    root_volume_id,
)
from tests.api.conftest import make_store
from tests.clustermanager.fakenodes import Cluster, cluster

V, S = VolumeState, InstanceState
ZONE = "tashi-1a"


@dataclass
class Disks:
    """The node managers' answers to the volume calls, and the calls made."""

    calls: list[tuple[str, HostId, InstanceId, str]] = field(default_factory=list)
    refuse: dict[str, TashiError] = field(default_factory=dict)  # call -> what it raises once

    def install(self, nodes: Any) -> None:
        nodes.attach_disk = self.attach_disk
        nodes.detach_disk = self.detach_disk
        nodes.backup_disk = self.backup_disk

    def _answer(self, call: str, host: Host, inst: Instance, what: str) -> None:
        self.calls.append((call, host.id, inst.id, what))
        refused = self.refuse.pop(call, None)
        if refused is not None:
            raise refused

    async def attach_disk(self, host: Host, inst: Instance, disk: DiskConfig) -> None:
        self._answer("attach", host, inst, f"{disk.uri}@{disk.device}")

    async def detach_disk(self, host: Host, inst: Instance, uri: str, timeout: float) -> None:
        self._answer("detach", host, inst, uri)

    async def backup_disk(
        self, host: Host, inst: Instance, uri: str, snapshot_id: str, timeout: float
    ) -> None:
        self._answer("backup", host, inst, uri)
        target = volumes_of(self.service).files.snapshot(snapshot_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        qemu_img("create", "-q", "-f", "qcow2", str(target), "1G")

    service: Any = None


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def volumes_of(service: Any) -> VolumeService:
    found: VolumeService = service.volumes
    return found


@dataclass
class World:
    c: Cluster
    disks: Disks
    bob: Principal

    @property
    def volumes(self) -> VolumeService:
        return volumes_of(self.c.service)

    async def volume(self, who: Principal, size: int = 1, **tags: str) -> str:
        made = await self.volumes.create(who, NewVolume(size, ZONE), tags)
        await self.volumes.wait()
        return made.volume.id

    async def state(self, volume_id: str) -> VolumeState | None:
        found = await self.c.service.db.read(lambda tx: tx.volumes.get(volume_id))
        return None if found is None else found.state

    async def running(self, who: Principal, name: str = "vm") -> Instance:
        request = VmRequest(name=name, disks=[DiskRequest(uri="base.qcow2")])
        inst = await self.c.service.instances.create_vm(who, request)
        return await self.c.service.instances.activate_vm(self.c.agent, str(inst.id), "h1")

    async def stopped(self, who: Principal) -> Instance:
        inst = await self.running(who, "stopping")
        inst = await self._persistent(inst)
        return await self.c.service.instances.stop_vm(who, str(inst.id), force=True)

    async def _persistent(self, inst: Instance) -> Instance:
        """StopInstances wants persistent disks only: make the instance's disk one."""
        disks = (DiskConfig(uri="base.qcow2", persistent=True),)

        def save(tx: Any) -> Instance:
            from tashi.storage.contract import InstanceChanges

            return tx.instances.transition(
                inst.id,
                inst.state,
                inst.state,
                now=self.c.clock.now(),
                changes=InstanceChanges(disks=disks),
            )

        return await self.c.service.db.write(save)

    async def instance(self, iid: InstanceId) -> Instance:
        return await self.c.service.instances.get(self.c.admin, str(iid))


@pytest.fixture(params=["memory", "sqlite"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    settings_store = tmp_path / "s"
    settings_store.mkdir()
    from tests.api.conftest import make_settings

    settings = make_settings(settings_store)
    settings.cluster_manager.state_dir.mkdir(mode=0o700)
    store = make_store(request.param, settings)
    c = cluster(tmp_path, store)
    disks = Disks(service=c.service)
    disks.install(c.nodes)

    def seed(tx: Any) -> Principal:
        user = tx.users.add("bob", role=Role.user, priority=0, password_hash="x", now=c.clock.now())
        return Principal(UserId(user.id), "bob", Role.user)

    bob = asyncio.run(c.service.db.write(seed))
    yield World(c, disks, bob)
    c.service.close()


def run(world: World, scenario: Callable[[World], Awaitable[None]]) -> None:
    async def go() -> None:
        try:
            await scenario(world)
        finally:
            await world.volumes.aclose()

    asyncio.run(go())


# --- making, seeing, deleting ----------------------------------------------------------------


def test_a_volume_is_made_in_the_background_and_seen_by_its_owner_only(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        made = await w.volumes.create(alice, NewVolume(2, ZONE, "gp3"), {"Name": "data"})
        assert (made.volume.state, made.volume.size, made.tags) == (V.creating, 2, {"Name": "data"})
        await w.volumes.wait()
        [listed] = await w.volumes.describe(alice)
        assert (listed.volume.state, listed.volume.volume_type, listed.tags) == (
            V.available,
            "gp3",
            {"Name": "data"},
        )
        assert w.volumes.files.volume(made.volume.id).is_file()
        assert await w.volumes.describe(w.bob) == []
        assert len(await w.volumes.describe(w.c.admin)) == 1
        with pytest.raises(UnknownVolume):
            await w.volumes.delete(w.bob, made.volume.id)
        await w.volumes.delete(alice, made.volume.id)
        assert await w.volumes.describe(alice) == []
        assert not w.volumes.files.volume(made.volume.id).exists()
        with pytest.raises(InvalidInput):
            await w.volumes.create(alice, NewVolume(0, ZONE))
        with pytest.raises(InvalidInput):
            await w.volumes.create(alice, NewVolume(None, ZONE))

    run(world, scenario)


def test_a_volume_from_a_snapshot_is_at_least_its_size(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        source = await w.volume(alice, 3)
        snap = (await w.volumes.create_snapshot(alice, source, "nightly")).snapshot
        with pytest.raises(InvalidState):  # still pending
            await w.volumes.create(alice, NewVolume(None, ZONE, snapshot_id=snap.id))
        await w.volumes.wait()
        [done] = await w.volumes.snapshots(alice)
        assert (done.snapshot.state, done.snapshot.volume_size) == (SnapshotState.completed, 3)
        with pytest.raises(InvalidInput):
            await w.volumes.create(alice, NewVolume(2, ZONE, snapshot_id=snap.id))
        with pytest.raises(UnknownSnapshot):
            await w.volumes.create(w.bob, NewVolume(None, ZONE, snapshot_id=snap.id))
        copy = await w.volumes.create(alice, NewVolume(None, ZONE, snapshot_id=snap.id))
        bigger = await w.volumes.create(alice, NewVolume(5, ZONE, snapshot_id=snap.id))
        await w.volumes.wait()
        states = {
            v.volume.id: (v.volume.state, v.volume.size) for v in await w.volumes.describe(alice)
        }
        assert states[copy.volume.id] == (V.available, 3)
        assert states[bigger.volume.id] == (V.available, 5)
        await w.volumes.delete_snapshot(alice, snap.id)
        assert not w.volumes.files.snapshot(snap.id).exists()
        with pytest.raises(UnknownSnapshot):
            await w.volumes.delete_snapshot(alice, snap.id)

    run(world, scenario)


# --- attaching and detaching -------------------------------------------------------------------


def test_attached_to_a_running_instance_it_is_hot_plugged(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        vol = await w.volume(alice)
        inst = await w.running(alice)
        attached = await w.volumes.attach(alice, vol, inst.id, "/dev/sdf")
        assert attached.state is V.attached and attached.attachment is not None
        assert w.disks.calls == [("attach", w.c.hosts[0], inst.id, f"volume:{vol}@/dev/sdf")]
        assert (await w.instance(inst.id)).disks[-1] == DiskConfig(
            uri=f"volume:{vol}", persistent=True, device="/dev/sdf"
        )
        other = await w.volume(alice)
        with pytest.raises(DeviceInUse):
            await w.volumes.attach(alice, other, inst.id, "/dev/xvdf")
        with pytest.raises(VolumeInUse):
            await w.volumes.attach(alice, vol, inst.id, "/dev/sdg")
        with pytest.raises(VolumeInUse):
            await w.volumes.delete(alice, vol)
        with pytest.raises(UnknownVolume):  # bob's view: no such volume
            await w.volumes.attach(w.bob, vol, inst.id, "/dev/sdg")
        mine = await w.volume(w.bob)
        with pytest.raises(NotFound):  # nor such an instance
            await w.volumes.attach(w.bob, mine, inst.id, "/dev/sdg")

        detached = await w.volumes.detach(alice, vol)
        assert detached.state is V.available and detached.attachment is None
        assert w.disks.calls[-1] == ("detach", w.c.hosts[0], inst.id, f"volume:{vol}")
        assert [d.uri for d in (await w.instance(inst.id)).disks] == ["base.qcow2"]
        with pytest.raises(InvalidState):
            await w.volumes.detach(alice, vol)

    run(world, scenario)


def test_an_instance_takes_so_many_volumes(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        inst = await w.running(alice)
        for n in range(MAX_ATTACHED):
            await w.volumes.attach(
                alice, await w.volume(alice), inst.id, f"/dev/sd{chr(ord('b') + n)}"
            )
        with pytest.raises(AttachmentLimit):
            await w.volumes.attach(alice, await w.volume(alice), inst.id, "/dev/sdz")

    run(world, scenario)


def test_a_stopped_instance_takes_and_gives_volumes_without_its_node(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        inst = await w.stopped(alice)
        assert inst.state is S.Stopped
        vol = await w.volume(alice)
        calls = len(w.disks.calls)
        assert (await w.volumes.attach(alice, vol, inst.id, "/dev/vdb")).state is V.attached
        assert (await w.instance(inst.id)).disks[-1].device == "/dev/vdb"
        assert (await w.volumes.detach(alice, vol)).state is V.available
        assert len(w.disks.calls) == calls

    run(world, scenario)


def test_instances_that_are_not_running_or_stopped_are_not_ready(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        request = VmRequest(name="waiting", disks=[DiskRequest(uri="base.qcow2")])
        pending = await w.c.service.instances.create_vm(alice, request)
        with pytest.raises(InstanceNotReady):
            await w.volumes.attach(alice, await w.volume(alice), pending.id, "/dev/sdf")

    run(world, scenario)


def test_a_refused_hot_plug_is_undone_and_a_lost_answer_finished_later(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        inst = await w.running(alice)
        vol = await w.volume(alice)
        w.disks.refuse["attach"] = InvalidState("image is in use by another VM")
        with pytest.raises(InvalidState):
            await w.volumes.attach(alice, vol, inst.id, "/dev/sdf")
        assert await w.state(vol) is V.available
        assert [d.uri for d in (await w.instance(inst.id)).disks] == ["base.qcow2"]

        w.disks.refuse["attach"] = Unanswered("the node manager did not answer")
        with pytest.raises(Unanswered):
            await w.volumes.attach(alice, vol, inst.id, "/dev/sdf")
        assert await w.state(vol) is V.attaching
        await w.volumes.reconcile()
        assert await w.state(vol) is V.attached
        assert [c[0] for c in w.disks.calls] == ["attach", "attach", "attach"]

    run(world, scenario)


def test_a_guest_that_holds_on_keeps_its_volume_unless_forced(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        inst = await w.running(alice)
        vol = await w.volume(alice)
        await w.volumes.attach(alice, vol, inst.id, "/dev/sdf")
        w.disks.refuse["detach"] = InvalidState("the guest did not let volume 5 go")
        with pytest.raises(InvalidState):
            await w.volumes.detach(alice, vol)
        assert await w.state(vol) is V.attached
        w.disks.refuse["detach"] = InvalidState("the guest did not let volume 5 go")
        forced = await w.volumes.detach(alice, vol, force=True)
        assert forced.state is V.detaching
        assert (await w.instance(inst.id)).disks[-1].uri == f"volume:{vol}"  # still there
        await w.volumes.reconcile()  # it lets go now
        assert await w.state(vol) is V.available
        assert len((await w.instance(inst.id)).disks) == 1

    run(world, scenario)


def test_two_attaches_of_one_volume_one_wins(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        one, two = await w.running(alice, "one"), await w.running(alice, "two")
        vol = await w.volume(alice)
        done = await asyncio.gather(
            w.volumes.attach(alice, vol, one.id, "/dev/sdf"),
            w.volumes.attach(alice, vol, two.id, "/dev/sdf"),
            return_exceptions=True,
        )
        assert sorted(type(d).__name__ for d in done) in (
            ["Volume", "VolumeInUse"],
            ["StateConflict", "Volume"],
        )
        holders = [i for i in (one, two) if len((await w.instance(i.id)).disks) == 2]
        assert len(holders) == 1

    run(world, scenario)


# --- instances that go -------------------------------------------------------------------------


def test_a_removed_instance_frees_its_volumes_or_deletes_them(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        kept, doomed = await w.volume(alice), await w.volume(alice)
        inst = await w.running(alice)
        await w.volumes.attach(alice, kept, inst.id, "/dev/sdf")

        def also(tx: Any) -> Instance:
            volume = tx.volumes.get(doomed)
            return w.volumes.attach_new(
                tx, tx.instances.get(inst.id), [Planned(volume, "/dev/sdg", True)]
            )

        # (attach_new is RunInstances' hook; here it attaches to a running record directly)
        await w.c.service.db.write(also)
        await w.c.service.instances.destroy_vm(alice, str(inst.id))
        await w.volumes.wait()
        assert await w.state(kept) is V.available
        assert await w.state(doomed) is None
        assert not w.volumes.files.volume(doomed).exists()

    run(world, scenario)


def test_reconcile_finishes_files_and_instances_left_behind(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        vol = await w.volume(alice)
        inst = await w.running(alice)
        await w.volumes.attach(alice, vol, inst.id, "/dev/sdf")
        with w.c.service.db.store.transaction() as tx:  # unseen: as before a restart
            tx.instances.remove(inst.id, S.Running)
            tx.volumes.add(
                replace(
                    tx.volumes.get(vol),
                    id="vol-c0000000000000001",
                    attachment=None,
                    state=V.creating,
                )
            )  # type: ignore[arg-type]
        assert await w.state(vol) is V.attached
        await w.volumes.reconcile()
        await w.volumes.wait()
        assert await w.state(vol) is V.available
        assert await w.state("vol-c0000000000000001") is V.available
        assert w.volumes.files.volume("vol-c0000000000000001").is_file()

    run(world, scenario)


# --- snapshots and root volumes ----------------------------------------------------------------


def test_a_running_vms_volume_is_copied_by_its_node(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        inst = await w.running(alice)
        vol = await w.volume(alice)
        await w.volumes.attach(alice, vol, inst.id, "/dev/sdf")
        snap = (await w.volumes.create_snapshot(alice, vol, "live")).snapshot
        with pytest.raises(InvalidState):
            await w.volumes.delete_snapshot(alice, snap.id)
        await w.volumes.wait()
        assert w.disks.calls[-1] == ("backup", w.c.hosts[0], inst.id, f"volume:{vol}")
        [done] = await w.volumes.snapshots(alice)
        assert done.snapshot.state is SnapshotState.completed
        w.disks.refuse["backup"] = InvalidState("the VM stopped")
        await w.volumes.create_snapshot(alice, vol)
        await w.volumes.wait()
        states = sorted(s.snapshot.state.value for s in await w.volumes.snapshots(alice))
        assert states == ["completed", "error"]
        assert await w.volumes.snapshots(w.bob) == []

    run(world, scenario)


def test_a_root_disk_is_a_volume_that_stays(world: World) -> None:
    async def scenario(w: World) -> None:
        alice = w.c.alice
        images = w.c.service.images.store.images_dir
        qemu_img("create", "-q", "-f", "qcow2", str(images / "own.qcow2"), "2G")
        request = VmRequest(name="rooted", disks=[DiskRequest(uri="own.qcow2", persistent=True)])
        inst = await w.c.service.instances.create_vm(alice, request)
        [root] = await w.volumes.roots(alice)
        assert (root.id, root.size, root.instance.id) == (root_volume_id(inst.id), 2, inst.id)
        assert await w.volumes.roots(w.bob) == []
        with pytest.raises(VolumeInUse):
            await w.volumes.delete(alice, root.id)
        with pytest.raises(InvalidState):
            await w.volumes.detach(alice, root.id)
        with pytest.raises(UnknownVolume):
            await w.volumes.delete(w.bob, root.id)
        snap = (await w.volumes.create_snapshot(alice, root.id)).snapshot
        await w.volumes.wait()
        [done] = await w.volumes.snapshots(alice)
        assert (done.snapshot.state, done.snapshot.volume_size) == (SnapshotState.completed, 2)
        assert w.volumes.files.snapshot(snap.id).is_file()

    run(world, scenario)
