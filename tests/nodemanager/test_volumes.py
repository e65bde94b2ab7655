"""Volumes on a node: ``DiskManager`` (real qemu-img and image locks) and ``NodeService`` over
the fake VMM driver, through the node API's own routes.

A volume is found in ``<prefix>/volumes`` (never among the images), locked exclusively like any
persistent disk, and carries its attachment point into its ``DiskSpec``. It joins a running VM
(``attachDisk``) under its lock and leaves it (``detachDisk``) with it; the VM's recorded
instance follows, so a node manager started again finds the volume and its lock. A migration
target takes its persistent disks' locks only once the VM has arrived. ``backupDisk`` copies a
running VM's disk into a snapshot's file, named only when complete.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tashi.domain.errors import InvalidState, NotFound
from tashi.domain.ids import InstanceId, NetworkId, UserId
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.states import InstanceState
from tashi.images.locks import ImageLock
from tashi.images.store import ImageStore
from tashi.images.volumes import VolumeFiles
from tashi.network.fake import FakeNetworkDriver
from tashi.nodeapi import convert, paths
from tashi.nodeapi.schemas import AttachDiskIn, BackupDiskIn, DetachDiskIn
from tashi.nodemanager.disks import DiskManager
from tashi.nodemanager.routes import create_app
from tashi.nodemanager.service import NodeService
from tashi.nodemanager.vmdirs import VmDirs
from tashi.vmm.base import VmState
from tashi.vmm.fake import FakeDriver

VOL = "vol-a0000000000000001"
SECRET = "s" * 40
I5 = InstanceId(5)


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    images = tmp_path / "vfs" / "images"
    images.mkdir(parents=True)
    qemu_img("create", "-q", "-f", "qcow2", str(images / "root.qcow2"), "16M")
    (tmp_path / "vfs" / "volumes").mkdir()
    qemu_img("create", "-q", "-f", "qcow2", str(VolumeFiles(tmp_path / "vfs").volume(VOL)), "8M")
    return ImageStore(tmp_path / "vfs")


def volume(device: str = "/dev/sdf") -> DiskConfig:
    return DiskConfig(uri=f"volume:{VOL}", persistent=True, device=device)


# --- DiskManager ---------------------------------------------------------------------------


def test_a_volume_is_a_persistent_disk_found_among_the_volumes(
    store: ImageStore, tmp_path: Path
) -> None:
    disks = DiskManager(store, tmp_path / "scratch")
    root = DiskConfig(uri="root.qcow2", persistent=True)
    prepared = disks.prepare(I5, [root, volume()])
    [_, vol] = prepared.disks
    assert (vol.path, vol.format, vol.shared, vol.volume) == (
        VolumeFiles(store.prefix).volume(VOL),
        "qcow2",
        True,
        5,
    )
    with pytest.raises(InvalidState):  # exclusive, as any persistent disk
        disks.prepare(InstanceId(6), [volume()])
    with pytest.raises(NotFound):
        disks.prepare(InstanceId(6), [replace(volume(), uri="volume:vol-a0000000000000009")])
    with pytest.raises(NotFound):  # a volume's id is never an image's name
        disks.prepare(InstanceId(6), [DiskConfig(uri=f"{VOL}.qcow2")])
    prepared.release()
    disks.prepare(InstanceId(6), [volume()]).release()


def test_a_volume_joins_and_leaves_prepared_disks_with_its_lock(
    store: ImageStore, tmp_path: Path
) -> None:
    disks = DiskManager(store, tmp_path / "scratch")
    prepared = disks.prepare(I5, [DiskConfig(uri="root.qcow2")])
    spec = prepared.plug(volume("/dev/vdc"))
    assert spec.volume == 2 and prepared.disks[-1] == spec
    path = spec.path
    with pytest.raises(InvalidState):
        ImageLock.take(path, exclusive=False)
    prepared.unplug(path)
    prepared.unplug(path)  # idempotent
    assert [d.path for d in prepared.disks] != [path]
    ImageLock.take(path, exclusive=True).release()
    prepared.release()


def test_a_migration_target_locks_its_persistent_disks_once_the_vm_has_arrived(
    store: ImageStore, tmp_path: Path
) -> None:
    disks = DiskManager(store, tmp_path / "scratch")
    root = DiskConfig(uri="root.qcow2", persistent=True)
    source = disks.prepare(I5, [root, volume()])
    target = disks.prepare(I5, [root, volume()], incoming=True)  # beside its source
    assert [d.volume for d in target.disks] == [None, 5]
    assert target.settle() != []  # too early: the source still holds them (logged)
    source.release()
    target = disks.prepare(I5, [root, volume()], incoming=True)
    assert target.settle() == []
    with pytest.raises(InvalidState):
        disks.prepare(InstanceId(6), [volume()])
    target.release()


def test_a_blank_copy_target_has_the_disks_size(store: ImageStore, tmp_path: Path) -> None:
    disks = DiskManager(store, tmp_path / "scratch")
    source = VolumeFiles(store.prefix).volume(VOL)
    target = tmp_path / "vfs" / "snapshots" / "x.qcow2"
    disks.blank_like(source, target)
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", str(target)], capture_output=True, text=True
    )
    assert '"virtual-size": 8388608' in out.stdout


# --- NodeService and its routes --------------------------------------------------------------


def instance(*disks: DiskConfig) -> Instance:
    return Instance(
        id=I5,
        name="vm5",
        user_id=UserId(1),
        state=InstanceState.Running,
        cores=1,
        memory=64,
        disks=disks,
        nics=(NicConfig(network=NetworkId(1), mac="52:54:00:00:00:05"),),
    )


class Node:
    def __init__(self, store: ImageStore, tmp_path: Path, driver: FakeDriver) -> None:
        self.driver = driver
        self.dirs = VmDirs(tmp_path / "vms")
        self.service = NodeService(
            driver=driver,
            network=FakeNetworkDriver([1]),
            disks=DiskManager(store, tmp_path / "scratch"),
            dirs=self.dirs,
            suspend_dir=tmp_path / "vfs" / "suspend",
            images_dir=store.images_dir,
            events=self,
            now=lambda: datetime.now(UTC),
            advertise_host="127.0.0.1",
        )
        self.client = TestClient(create_app(self.service, SECRET))
        self.client.headers["Authorization"] = f"Bearer {SECRET}"

    def put(self, event: object) -> None:
        """Events are not what these tests look at."""

    def post(self, action: str, body: object, status: int = 200) -> dict[str, object]:
        answer = self.client.post(paths.vm_action(5, action), json=body.model_dump())  # type: ignore[attr-defined]
        assert answer.status_code == status, answer.text
        return dict(answer.json())


@pytest.fixture
def node(store: ImageStore, tmp_path: Path) -> Iterator[Node]:
    made = Node(store, tmp_path, FakeDriver())
    yield made
    made.client.close()


def run(work: object) -> object:
    return asyncio.run(work)  # type: ignore[arg-type]


def test_attach_and_detach_through_the_node_api(node: Node, store: ImageStore) -> None:
    root = DiskConfig(uri="root.qcow2", persistent=True)
    node.client.post(
        paths.VMS, json={"instance": convert.instance_wire(instance(root)).model_dump()}
    )
    path = VolumeFiles(store.prefix).volume(VOL)

    node.post("attachDisk", AttachDiskIn(disk=convert.disk_wire(volume())))
    node.post("attachDisk", AttachDiskIn(disk=convert.disk_wire(volume())))  # a retry: done
    recorded = node.dirs.instance(I5)
    assert recorded is not None and recorded.disks == (root, volume())
    [status] = run(node.driver.list())  # type: ignore[misc]
    assert status.spec.disks[-1].volume == 5
    with pytest.raises(InvalidState):
        ImageLock.take(path, exclusive=False)

    node.driver.held_disks.add(5)
    refused = node.post("detachDisk", DetachDiskIn(uri=volume().uri, timeout=1), status=409)
    assert "let volume 5 go" in str(refused)
    node.driver.held_disks.clear()
    node.post("detachDisk", DetachDiskIn(uri=volume().uri, timeout=1))
    node.post("detachDisk", DetachDiskIn(uri=volume().uri, timeout=1))  # gone: no error
    recorded = node.dirs.instance(I5)
    assert recorded is not None and recorded.disks == (root,)
    ImageLock.take(path, exclusive=True).release()


def test_a_running_vms_disk_is_copied_into_a_snapshot_file(node: Node, store: ImageStore) -> None:
    root = DiskConfig(uri="root.qcow2", persistent=True)
    node.client.post(
        paths.VMS, json={"instance": convert.instance_wire(instance(root, volume())).model_dump()}
    )
    files = VolumeFiles(store.prefix)
    snap = "snap-b0000000000000001"
    node.post("backupDisk", BackupDiskIn(uri=volume().uri, snapshot=snap))
    assert files.snapshot(snap).read_bytes() == files.volume(VOL).read_bytes()  # the fake copies
    assert not files.snapshot_part(snap).exists()
    node.post("backupDisk", BackupDiskIn(uri="root.qcow2", snapshot="snap-b0000000000000002"))
    node.post("backupDisk", BackupDiskIn(uri="nothing", snapshot="snap-b0000000000000003"), 404)
    node.driver.failing.add("backup_disk")
    node.post("backupDisk", BackupDiskIn(uri=volume().uri, snapshot="snap-b0000000000000004"), 502)
    assert not files.snapshot("snap-b0000000000000004").exists()
    assert not files.snapshot_part("snap-b0000000000000004").exists()


def test_a_restarted_node_manager_keeps_a_hot_plugged_volume(
    store: ImageStore, tmp_path: Path
) -> None:
    async def scenario() -> None:
        first = Node(store, tmp_path, FakeDriver())
        await first.service.start(instance(DiskConfig(uri="root.qcow2", persistent=True)))
        await first.service.attach_disk(I5, volume())
        await first.driver.close()  # the node manager dies: the kernel drops its locks
        for vm in list(first.service._vms.values()):
            vm.disks.release()

        second = Node(store, tmp_path, FakeDriver())
        assert await second.service.recover() == [I5]
        path = VolumeFiles(store.prefix).volume(VOL)
        with pytest.raises(InvalidState):  # locked again by the new one
            ImageLock.take(path, exclusive=False)
        [(recorded, _, state)] = second.service.report()
        assert recorded.disks[-1] == volume() and state is VmState.running
        await second.service.detach_disk(I5, volume().uri, 1.0)
        ImageLock.take(path, exclusive=True).release()
        await second.service.destroy(I5)

    asyncio.run(scenario())
