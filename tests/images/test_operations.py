"""copy, clone, rebase and remove in a real image store, with the real qemu-img.

Each test gets a store with a 1 MB raw image (data in two places, holes between) and a qcow2
converted from it with direct-boot sidecars. Every refusal is checked to change nothing in the
store: its full listing, dot files included, with sizes and modification times, is the same
before and after. Failures and cancellations of qemu-img use a stand-in program that runs the
real qemu-img for everything else.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    InvalidInput,
    InvalidState,
    NotFound,
    TashiError,
)
from tashi.domain.models import Image
from tashi.images import filecopy, markers
from tashi.images.boot import direct_boot_of
from tashi.images.locks import ImageLock
from tashi.images.operations import ImageOps, Op, part_of
from tashi.images.store import ImageStore
from tests.images.guests import require_programs, running
from tests.images.samples import MB, sample_images, stand_in

pytestmark = pytest.mark.anyio

SIDECARS = {".kernel": b"kernel-bytes", ".initrd": b"initrd-bytes", ".cmdline": b"console=ttyS0\n"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


def info(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(qemu_img("info", "--output=json", "-U", str(path)))
    return data


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    images = tmp_path / "vfs" / "images"
    images.mkdir(parents=True)
    sample_images(images, SIDECARS)
    return ImageStore(tmp_path / "vfs")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def ops(store: ImageStore, executor: ThreadPoolExecutor) -> ImageOps:
    return ImageOps(store, executor)


def snapshot(store: ImageStore) -> dict[str, tuple[int, int]]:
    """Every entry of the store (dot files too): size and modification time."""
    return {
        entry.name: (
            entry.stat(follow_symlinks=False).st_size,
            entry.stat(follow_symlinks=False).st_mtime_ns,
        )
        for entry in os.scandir(store.images_dir)
    }


async def make(ops: ImageOps, op: Op, src: str, dst: str) -> Image:
    return await ops.make(await ops.plan(op, src, dst))


# --- what each operation makes --------------------------------------------------------------


async def test_copy_is_byte_identical_keeps_holes_and_appears_in_the_list(
    ops: ImageOps, store: ImageStore
) -> None:
    image = await make(ops, Op.copy, "disk.raw", "copy.raw")
    src, dst = store.images_dir / "disk.raw", store.images_dir / "copy.raw"
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_blocks <= src.stat().st_blocks + 16  # the holes stayed holes
    assert (image.name, image.size, image.format) == ("copy.raw", MB, "raw")
    assert "copy.raw" in [i.name for i in store.list()]


async def test_copy_takes_the_direct_boot_sidecars(ops: ImageOps, store: ImageStore) -> None:
    await make(ops, Op.copy, "disk.qcow2", "mine.qcow2")
    mine = store.images_dir / "mine.qcow2"
    assert mine.read_bytes() == (store.images_dir / "disk.qcow2").read_bytes()
    for suffix, data in SIDECARS.items():
        assert (store.images_dir / f"mine.qcow2{suffix}").read_bytes() == data
    boot = direct_boot_of(mine)
    assert boot is not None and boot.cmdline == "console=ttyS0"
    assert [i.name for i in store.list()] == ["disk.qcow2", "disk.raw", "mine.qcow2"]


@pytest.mark.parametrize(("src", "fmt"), [("disk.qcow2", "qcow2"), ("disk.raw", "raw")])
async def test_clone_is_an_overlay_on_the_absolute_source(
    ops: ImageOps, store: ImageStore, src: str, fmt: str
) -> None:
    image = await make(ops, Op.clone, src, "clone.qcow2")
    clone = store.images_dir / "clone.qcow2"
    details = info(clone)
    assert details["format"] == "qcow2" and image.format == "qcow2"
    assert details["backing-filename"] == str(store.path_of(src))
    assert Path(str(details["backing-filename"])).is_absolute()
    assert details["backing-filename-format"] == fmt
    assert clone.stat().st_size < 512 * 1024  # an overlay, not a copy
    qemu_img("compare", "-U", str(store.images_dir / src), str(clone))  # same content


async def test_clone_takes_the_sidecars(ops: ImageOps, store: ImageStore) -> None:
    await make(ops, Op.clone, "disk.qcow2", "clone.qcow2")
    for suffix, data in SIDECARS.items():
        assert (store.images_dir / f"clone.qcow2{suffix}").read_bytes() == data


async def test_rebase_flattens_into_a_standalone_qcow2(ops: ImageOps, store: ImageStore) -> None:
    await make(ops, Op.clone, "disk.qcow2", "clone.qcow2")
    image = await make(ops, Op.rebase, "clone.qcow2", "flat.qcow2")
    flat = store.images_dir / "flat.qcow2"
    details = info(flat)
    assert details["format"] == "qcow2" and image.format == "qcow2"
    assert "backing-filename" not in details
    qemu_img("compare", "-U", str(store.images_dir / "disk.raw"), str(flat))
    assert (store.images_dir / "flat.qcow2.kernel").read_bytes() == SIDECARS[".kernel"]


async def test_rebase_of_a_raw_image_makes_a_qcow2(ops: ImageOps, store: ImageStore) -> None:
    await make(ops, Op.rebase, "disk.raw", "base.qcow2")
    assert info(store.images_dir / "base.qcow2")["format"] == "qcow2"
    assert not (store.images_dir / "base.qcow2.kernel").exists()  # the raw one had none


async def test_a_leftover_of_a_killed_attempt_is_replaced(ops: ImageOps, store: ImageStore) -> None:
    part = part_of(store.images_dir / "copy.raw")
    part.write_bytes(b"half an image")
    await make(ops, Op.copy, "disk.raw", "copy.raw")
    assert not part.exists()
    assert (store.images_dir / "copy.raw").stat().st_size == MB


# --- refusals change nothing ----------------------------------------------------------------


@pytest.fixture
def traps(store: ImageStore, tmp_path: Path) -> ImageStore:
    """Links out of the store, a qcow2 backed by a file outside it, an orphaned sidecar."""
    outside = tmp_path / "outside.raw"
    outside.write_bytes(b"secret" * 1000)
    images = store.images_dir
    (images / "link-out").symlink_to(outside)
    (images / "dangling").symlink_to(tmp_path / "nowhere")
    (images / "etc").symlink_to("/etc")
    qemu_img(
        "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(outside), str(images / "evil.qcow2")
    )
    (images / "orphan.qcow2.kernel").write_bytes(b"left behind")
    (images / "peek.raw").write_bytes(b"\0" * 4096)
    (images / "peek.raw.kernel").symlink_to(outside)
    return store


REFUSED = [
    ("../x", "new.img", InvalidInput),
    ("/etc/passwd", "new.img", InvalidInput),
    ("a/b", "new.img", InvalidInput),
    ("etc/passwd", "new.img", InvalidInput),
    ("disk.qcow2", "../x", InvalidInput),
    ("disk.qcow2", "/tmp/x", InvalidInput),
    ("disk.qcow2", "a/b", InvalidInput),
    ("disk.qcow2", ".hidden", InvalidInput),
    ("disk.qcow2", "", InvalidInput),
    ("disk.qcow2", "x" * 201, InvalidInput),
    ("disk.qcow2", "disk.raw", AlreadyExists),
    ("disk.qcow2", "disk.qcow2", AlreadyExists),
    ("disk.qcow2", "dangling", AlreadyExists),  # never written through a link
    ("disk.qcow2", "link-out", AlreadyExists),
    ("disk.qcow2", "orphan.qcow2", AlreadyExists),  # its sidecar is there
    ("missing.img", "new.img", NotFound),
    ("link-out", "new.img", InvalidInput),
    ("dangling", "new.img", InvalidInput),
    ("evil.qcow2", "new.img", InvalidInput),  # backing file outside the store
    ("peek.raw", "new.img", InvalidInput),  # a sidecar linking out
]


@pytest.mark.parametrize("op", list(Op))
@pytest.mark.parametrize(("src", "dst", "error"), REFUSED)
async def test_refusals_change_nothing(
    ops: ImageOps, traps: ImageStore, op: Op, src: str, dst: str, error: type[TashiError]
) -> None:
    before = snapshot(traps)
    with pytest.raises(error) as raised:
        await make(ops, op, src, dst)
    assert "\n" not in raised.value.message
    assert snapshot(traps) == before


async def test_a_source_a_vm_writes_is_refused(ops: ImageOps, store: ImageStore) -> None:
    conflict = "held by the test"
    with ImageLock.take(store.path_of("disk.qcow2"), exclusive=True, conflict=conflict):
        before = snapshot(store)
        with pytest.raises(InvalidState, match="persistent disk of a running VM"):
            await make(ops, Op.copy, "disk.qcow2", "copy.qcow2")
        assert snapshot(store) == before


async def test_a_source_used_as_a_base_may_be_copied(ops: ImageOps, store: ImageStore) -> None:
    with ImageLock.take(store.path_of("disk.qcow2"), exclusive=False, conflict="-"):
        await make(ops, Op.copy, "disk.qcow2", "copy.qcow2")
    assert (store.images_dir / "copy.qcow2").is_file()


# --- failures and cancellation leave nothing half-made --------------------------------------


def without_locks(snap: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The image lock a successful ``plan`` creates stays (lock files are never deleted)."""
    return {k: v for k, v in snap.items() if not k.endswith(".vmlock")}


async def test_a_failing_qemu_img_is_a_backend_failure_with_its_message(
    store: ImageStore, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    fake = stand_in(
        tmp_path, "convert", 'echo partial > "$last"; echo "qemu-img: disk full" >&2; exit 1'
    )
    ops = ImageOps(store, executor, qemu_img=fake)
    before = snapshot(store)
    with pytest.raises(BackendFailure, match="qemu-img convert failed: qemu-img: disk full"):
        await make(ops, Op.rebase, "disk.qcow2", "flat.qcow2")
    assert without_locks(snapshot(store)) == before


async def test_a_missing_qemu_img_is_a_backend_failure(
    store: ImageStore, executor: ThreadPoolExecutor
) -> None:
    ops = ImageOps(store, executor, qemu_img="/nonexistent/qemu-img")
    with pytest.raises(BackendFailure, match="could not run"):
        await make(ops, Op.clone, "disk.qcow2", "clone.qcow2")


async def test_an_image_appears_only_when_complete_and_a_cancel_kills_qemu_img(
    store: ImageStore, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    body = f'echo partial > "$last"; echo $$ > {pid_file}; exec sleep 60'
    ops = ImageOps(store, executor, qemu_img=stand_in(tmp_path, "convert", body))
    before = snapshot(store)
    task = asyncio.create_task(make(ops, Op.rebase, "disk.qcow2", "flat.qcow2"))
    while not pid_file.exists() or not pid_file.read_text().strip():
        await asyncio.sleep(0.02)
    assert part_of(store.images_dir / "flat.qcow2").exists()
    assert "flat.qcow2" not in [i.name for i in store.list()]
    assert not (store.images_dir / "flat.qcow2").exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert without_locks(snapshot(store)) == before


async def test_the_source_lock_is_released_after_the_operation(
    ops: ImageOps, store: ImageStore
) -> None:
    await make(ops, Op.copy, "disk.qcow2", "copy.qcow2")
    with ImageLock.take(store.path_of("disk.qcow2"), exclusive=True, conflict="still locked"):
        pass


# --- removal --------------------------------------------------------------------------------


async def test_remove_takes_the_sidecars_too(ops: ImageOps, store: ImageStore) -> None:
    await make(ops, Op.copy, "disk.qcow2", "mine.qcow2")
    image = await asyncio.to_thread(ops.remove, "mine.qcow2")
    assert image.name == "mine.qcow2"
    left = sorted(n for n in os.listdir(store.images_dir) if n.startswith("mine"))
    assert left == []
    assert [i.name for i in store.list()] == ["disk.qcow2", "disk.raw"]


async def test_remove_of_a_name_that_never_comes_back_takes_its_lock_file(
    ops: ImageOps, store: ImageStore
) -> None:
    await make(ops, Op.copy, "disk.qcow2", "vm-7-disk0.qcow2")
    await make(ops, Op.copy, "disk.qcow2", "kept.qcow2")
    for name in ("vm-7-disk0.qcow2", "kept.qcow2"):
        with ImageLock.take(store.path_of(name), exclusive=True, conflict="-"):
            pass  # a VM used it: its lock file exists
    ops.remove("vm-7-disk0.qcow2", unique=True)
    ops.remove("kept.qcow2")
    left = sorted(n for n in os.listdir(store.images_dir) if "vm-7" in n or "kept" in n)
    assert left == [".kept.qcow2.vmlock"]  # another image may be made under that name


async def test_remove_refuses_the_backing_file_of_another_image(
    ops: ImageOps, store: ImageStore
) -> None:
    await make(ops, Op.clone, "disk.qcow2", "clone.qcow2")
    before = snapshot(store)
    with pytest.raises(InvalidState, match=r"backing file of clone\.qcow2"):
        ops.remove("disk.qcow2")
    assert snapshot(store) == before
    ops.remove("clone.qcow2")
    ops.remove("disk.qcow2")


def test_remove_refuses_an_image_a_vm_holds(ops: ImageOps, store: ImageStore) -> None:
    with ImageLock.take(store.path_of("disk.raw"), exclusive=False, conflict="-"):
        before = snapshot(store)
        with pytest.raises(InvalidState, match="in use by a running VM"):
            ops.remove("disk.raw")
        assert snapshot(store) == before


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("../x", InvalidInput),
        ("/etc/passwd", InvalidInput),
        ("a/b", InvalidInput),
        ("link-out", InvalidInput),
        ("missing.img", NotFound),
    ],
)
def test_remove_refusals_change_nothing(
    ops: ImageOps, traps: ImageStore, name: str, error: type[TashiError]
) -> None:
    before = snapshot(traps)
    with pytest.raises(error):
        ops.remove(name)
    assert snapshot(traps) == before


def test_sweep_removes_part_files_except_those_being_made(ops: ImageOps, store: ImageStore) -> None:
    images = store.images_dir
    for name in ("old.img", "old.img.kernel", "busy.img", "busy.img.initrd"):
        part_of(images / name).write_bytes(b"x")
    removed = ops.sweep(keep=["busy.img"])
    assert sorted(removed) == [".old.img.kernel.tashi-part", ".old.img.tashi-part"]
    assert part_of(images / "busy.img").exists() and part_of(images / "busy.img.initrd").exists()


# --- the file copy ----------------------------------------------------------------------------


def test_copy_file_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    src = tmp_path / "src"
    src.write_bytes(os.urandom(300_000))
    filecopy.copy_file(src, tmp_path / "dst", threading.Event())
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()


def test_copy_file_stops_and_refuses_an_existing_or_linked_target(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"data" * 1000)
    stop = threading.Event()
    stop.set()
    with pytest.raises(filecopy.Stopped):
        filecopy.copy_file(src, tmp_path / "stopped", stop)
    (tmp_path / "link").symlink_to(tmp_path / "victim")
    with pytest.raises(FileExistsError):
        filecopy.copy_file(src, tmp_path / "link", threading.Event())
    assert not (tmp_path / "victim").exists()


# --- what is made boots like the original -----------------------------------------------------


async def test_a_clone_and_a_flattened_copy_of_the_tiny_guest_boot(
    tiny_image: Path, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    require_programs("qemu-system-x86_64", "qemu-img")
    images = tmp_path / "vfs" / "images"
    images.mkdir(parents=True)
    for path in tiny_image.parent.glob(f"{tiny_image.name}*"):
        shutil.copyfile(path, images / path.name)
    ops = ImageOps(ImageStore(tmp_path / "vfs"), executor)
    await make(ops, Op.clone, tiny_image.name, "lab.qcow2")
    await make(ops, Op.rebase, "lab.qcow2", "flat.qcow2")
    for name in ("lab.qcow2", "flat.qcow2"):
        workdir = tmp_path / name
        workdir.mkdir()
        with running(images / name, workdir) as guest:
            up, _ = await asyncio.to_thread(guest.wait_for, markers.UP)
        assert up.fields["root"] == "/dev/vda", name
