"""Volume and snapshot files (``tashi.images.volumes``) with real qemu-img and image locks: made
under a hidden name and named when whole, never over an existing one; a snapshot of a disk a VM
holds is refused, its copy is standalone; a volume in use is not removed; a volume's disk path
is found beside the images, never among them."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound
from tashi.images.locks import ImageLock
from tashi.images.store import ImageStore
from tashi.images.volumes import VolumeFiles, disk_path

VOL, VOL2 = "vol-a0000000000000001", "vol-a0000000000000002"
SNAP = "snap-b0000000000000001"
GIB = 2**30


def info(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


def write(path: Path, pattern: str) -> None:
    command = f"write -P {pattern} 0 64k"
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", command, str(path)], check=True, capture_output=True
    )


def reads(path: Path, pattern: str) -> bool:
    command = f"read -P {pattern} 0 64k"
    done = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", command, str(path)], capture_output=True, text=True
    )
    return "read 65536/65536" in done.stdout and "Pattern verification failed" not in done.stdout


def test_volumes_are_made_restored_and_removed(tmp_path: Path) -> None:
    files = VolumeFiles(tmp_path)

    async def scenario() -> None:
        await files.create(VOL, 1)
        made = files.volume(VOL)
        assert (info(made)["format"], info(made)["virtual-size"]) == ("qcow2", GIB)
        assert sorted(p.name for p in made.parent.iterdir()) == [made.name]  # no part file
        with pytest.raises(AlreadyExists):
            await files.create(VOL, 1)
        write(made, "0x11")
        await files.snapshot_of(made, SNAP)
        copy = files.snapshot(SNAP)
        assert "backing-filename" not in info(copy)
        await files.restore(VOL2, SNAP, 3)
        restored = files.volume(VOL2)
        assert info(restored)["virtual-size"] == 3 * GIB and reads(restored, "0x11")
        with ImageLock.take(made, exclusive=True):  # a VM writes it
            with pytest.raises(InvalidState):
                await files.snapshot_of(made, "snap-b0000000000000002")
            with pytest.raises(InvalidState):
                await asyncio.to_thread(files.remove_volume, VOL)
        assert not files.snapshot("snap-b0000000000000002").exists()
        await asyncio.to_thread(files.remove_volume, VOL)
        await asyncio.to_thread(files.remove_volume, VOL)  # gone already: no error
        await asyncio.to_thread(files.remove_snapshot, SNAP)
        assert not made.exists() and not copy.exists()
        with pytest.raises(NotFound):
            await files.restore("vol-a0000000000000003", SNAP, 1)

    asyncio.run(scenario())


def test_a_disk_path_names_a_volume_or_an_image_never_a_path(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / f"{VOL}.qcow2").write_bytes(b"an image that looks like a volume")
    with pytest.raises(NotFound):  # a volume is looked for among the volumes only
        disk_path(store, f"volume:{VOL}")
    asyncio.run(VolumeFiles(tmp_path).create(VOL, 1))
    assert disk_path(store, f"volume:{VOL}") == tmp_path / "volumes" / f"{VOL}.qcow2"
    assert disk_path(store, f"{VOL}.qcow2") == (tmp_path / "images" / f"{VOL}.qcow2").resolve()
    for bad in ("volume:../x", "volume:vol-1", "volume:snap-b0000000000000001"):
        with pytest.raises(InvalidInput):
            disk_path(store, bad)
    with pytest.raises(InvalidInput):
        VolumeFiles(tmp_path).volume("../../etc/passwd")
