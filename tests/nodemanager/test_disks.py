"""Disk preparation on a node (``tashi.nodemanager.disks``): real qemu-img, locks and QEMU.

Each test has its own image store (``<tmp>/vfs/images``) and scratch directory. Lock holders "on
another host" are separate Python processes; QEMU runs with ``-S`` (no guest code) and is stopped
by its pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tashi.devcluster.processes import close_pipes, stop_child
from tashi.domain.errors import BackendFailure, InvalidInput, InvalidState, NotFound
from tashi.domain.ids import InstanceId
from tashi.domain.models import DiskConfig
from tashi.guestimage import builder
from tashi.images.locks import ImageLock, lock_file
from tashi.images.store import ImageStore
from tashi.nodemanager.disks import DiskManager
from tashi.vmm.base import BootSpec

REPO = Path(__file__).resolve().parents[2]
I5, I6 = InstanceId(5), InstanceId(6)
QEMU = "qemu-system-x86_64"


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


def info(path: Path) -> dict[str, object]:
    return dict(json.loads(qemu_img("info", "--output=json", "-U", str(path))))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    if shutil.which("qemu-img") is None:
        raise AssertionError("qemu-img is not installed: run `make test`, which does")
    images = tmp_path / "vfs" / "images"
    images.mkdir(parents=True)
    qemu_img("create", "-q", "-f", "qcow2", str(images / "base.qcow2"), "16M")
    qemu_img("create", "-q", "-f", "raw", str(images / "plain.img"), "4M")
    return ImageStore(tmp_path / "vfs")


@pytest.fixture
def disks(store: ImageStore, tmp_path: Path) -> DiskManager:
    return DiskManager(store, tmp_path / "scratch")


def nonpersistent(uri: str) -> DiskConfig:
    return DiskConfig(uri=uri, persistent=False)


def persistent(uri: str) -> DiskConfig:
    return DiskConfig(uri=uri, persistent=True)


# --- overlays ---------------------------------------------------------------------------------


def test_a_non_persistent_disk_is_an_overlay_on_the_image(
    disks: DiskManager, store: ImageStore
) -> None:
    base = store.images_dir.resolve() / "base.qcow2"
    before = base.read_bytes()
    prepared = disks.prepare(I5, [nonpersistent("base.qcow2"), nonpersistent("plain.img")])
    first, second = prepared.disks
    assert first.path == disks.scratch_dir / "5" / "disk0.qcow2" and first.format == "qcow2"
    assert not first.shared  # node-local: it travels with the VM on suspend and migration
    assert second.path == disks.scratch_dir / "5" / "disk1.qcow2"
    assert info(first.path)["backing-filename"] == str(base)
    assert info(first.path)["backing-filename-format"] == "qcow2"
    assert info(second.path)["backing-filename-format"] == "raw"
    assert info(first.path)["virtual-size"] == 16 * 2**20
    assert prepared.boot == BootSpec()
    prepared.release()
    assert not (disks.scratch_dir / "5").exists()
    prepared.release()  # idempotent
    assert base.read_bytes() == before


def test_a_persistent_disk_is_the_image_itself_under_an_exclusive_lock(
    disks: DiskManager, store: ImageStore
) -> None:
    prepared = disks.prepare(I5, [persistent("base.qcow2"), persistent("plain.img")])
    assert [(d.path.name, d.format, d.shared) for d in prepared.disks] == [
        ("base.qcow2", "qcow2", True),
        ("plain.img", "raw", True),
    ]
    assert lock_file(prepared.disks[0].path).is_file()
    assert [image.name for image in store.list()] == ["base.qcow2", "plain.img"]  # no lock files
    with pytest.raises(InvalidState, match=r"'base\.qcow2' is in use by another VM"):
        disks.prepare(I6, [persistent("base.qcow2")])
    with pytest.raises(InvalidState, match="cannot be a base"):
        disks.prepare(I6, [nonpersistent("base.qcow2")])
    assert disks.leftovers() == []
    prepared.release()
    disks.prepare(I6, [persistent("base.qcow2")]).release()  # free again


def test_bases_are_shared_but_never_written(disks: DiskManager) -> None:
    one = disks.prepare(I5, [nonpersistent("base.qcow2")])
    two = disks.prepare(I6, [nonpersistent("base.qcow2")])
    with pytest.raises(InvalidState, match="in use by another VM"):
        disks.prepare(InstanceId(7), [persistent("base.qcow2")])
    one.release()
    with pytest.raises(InvalidState):
        disks.prepare(InstanceId(7), [persistent("base.qcow2")])
    two.release()
    disks.prepare(InstanceId(7), [persistent("base.qcow2")]).release()


def test_one_vm_cannot_open_its_persistent_image_twice(disks: DiskManager) -> None:
    with pytest.raises(InvalidInput, match="opened once"):
        disks.prepare(I5, [persistent("base.qcow2"), nonpersistent("base.qcow2")])
    two = disks.prepare(I5, [nonpersistent("base.qcow2"), nonpersistent("base.qcow2")])
    assert len({d.path for d in two.disks}) == 2
    two.release()


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("../x", InvalidInput),
        ("../vfs/images/base.qcow2", InvalidInput),
        ("/etc/passwd", InvalidInput),
        ("sub/base.qcow2", InvalidInput),
        (".base.qcow2.vmlock", InvalidInput),
        ("missing.qcow2", NotFound),
    ],
)
def test_names_that_are_not_images_of_the_store_are_refused(
    disks: DiskManager, uri: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        disks.prepare(I5, [nonpersistent("base.qcow2"), DiskConfig(uri=uri)])
    assert not disks.scratch_dir.exists()  # refused before anything was made


def test_a_link_out_of_the_store_is_refused(disks: DiskManager, store: ImageStore) -> None:
    outside = store.prefix / "outside.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(outside), "1M")
    (store.images_dir / "sneaky.qcow2").symlink_to(outside)
    with pytest.raises(InvalidInput, match="outside the image store"):
        disks.prepare(I5, [persistent("sneaky.qcow2")])


def test_a_backing_file_out_of_the_store_is_refused(disks: DiskManager, store: ImageStore) -> None:
    # What a guest could do to a raw persistent disk: write a qcow2 header naming a host file.
    outside = store.prefix / "host-secret.raw"
    outside.write_bytes(b"secret" * 1000)
    evil = store.images_dir / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(outside), str(evil))
    for disk in (persistent("evil.qcow2"), nonpersistent("evil.qcow2")):
        with pytest.raises(InvalidInput, match="backing file outside the image store"):
            disks.prepare(I5, [disk])
    ImageLock.take(evil, exclusive=True).release()  # the failed attempts left no lock


def test_a_qemu_img_failure_carries_its_message_and_undoes_the_rest(
    disks: DiskManager, store: ImageStore
) -> None:
    (store.images_dir / "broken.qcow2").write_bytes(b"QFI\xfb" + b"\xff" * 508)
    with pytest.raises(BackendFailure, match=r"qemu-img info failed: .*broken\.qcow2"):
        disks.prepare(I5, [nonpersistent("base.qcow2"), persistent("broken.qcow2")])
    assert not (disks.scratch_dir / "5").exists()  # disk 0's overlay is gone again
    ImageLock.take(store.images_dir / "base.qcow2", exclusive=True).release()  # and its lock
    # A raw image is inspected by qemu-img (a plain qcow2 is read without it: test_qcow2chain.py)
    without = DiskManager(store, disks.scratch_dir, qemu_img="/nonexistent/qemu-img")
    with pytest.raises(BackendFailure, match="could not run"):
        without.prepare(I5, [nonpersistent("plain.img")])
    without.prepare(I5, [nonpersistent("base.qcow2")]).release()


def test_a_stale_overlay_of_an_earlier_attempt_is_replaced(disks: DiskManager) -> None:
    stale = disks.overlay_dir(I5) / "disk0.qcow2"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over")
    prepared = disks.prepare(I5, [nonpersistent("base.qcow2")])
    assert info(stale)["format"] == "qcow2"
    prepared.release()


# --- direct boot ------------------------------------------------------------------------------


def test_the_first_disks_sidecars_give_the_boot_spec(disks: DiskManager, store: ImageStore) -> None:
    image = store.images_dir / "plain.img"
    for suffix, text in [
        (".kernel", "K"),
        (".initrd", "I"),
        (".cmdline", "console=ttyS0  quiet\n"),
    ]:
        image.with_name(image.name + suffix).write_text(text)
    prepared = disks.prepare(I5, [nonpersistent("plain.img"), nonpersistent("base.qcow2")])
    root = store.images_dir.resolve()
    assert prepared.boot == BootSpec(
        kernel=root / "plain.img.kernel",
        initrd=root / "plain.img.initrd",
        cmdline="console=ttyS0 quiet",
    )
    prepared.release()
    other = disks.prepare(I5, [nonpersistent("base.qcow2"), nonpersistent("plain.img")])
    assert other.boot == BootSpec()  # only the first disk says how the VM boots
    other.release()


def test_the_tiny_guest_image_prepares_for_direct_boot(tmp_path: Path) -> None:
    built = builder.build(builder.BuildOptions(out_dir=REPO / "var" / "images"), say=lambda _: None)
    images = tmp_path / "vfs" / "images"
    images.mkdir(parents=True)
    for source in [built.image, *built.image.parent.glob(built.image.name + ".*")]:
        if not source.name.startswith("."):
            shutil.copy(source, images / source.name)
    disks = DiskManager(ImageStore(tmp_path / "vfs"), tmp_path / "scratch")
    prepared = disks.prepare(I5, [nonpersistent(built.image.name)])
    assert prepared.boot.kernel == images / f"{built.image.name}.kernel"
    assert prepared.boot.initrd == images / f"{built.image.name}.initrd"
    assert prepared.boot.cmdline
    assert info(prepared.disks[0].path)["backing-filename"] == str(images / built.image.name)
    prepared.release()


# --- locks across processes, crashes and restarts ---------------------------------------------

HOLDER = """
import sys
from pathlib import Path
from tashi.domain.ids import InstanceId
from tashi.domain.models import DiskConfig
from tashi.images.store import ImageStore
from tashi.nodemanager.disks import DiskManager
prefix, scratch, iid, *names = sys.argv[1:]
disks = [DiskConfig(uri=n.rstrip("!"), persistent=n.endswith("!")) for n in names]
prepared = DiskManager(ImageStore(Path(prefix)), Path(scratch)).prepare(InstanceId(int(iid)), disks)
print(" ".join(str(d.path) for d in prepared.disks), flush=True)
sys.stdin.read()
prepared.release()
"""


@contextmanager
def node_manager(
    store: ImageStore, scratch: Path, iid: int, *names: str
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Another node manager process holding the disks ``names`` (``x!``: persistent) until the
    block ends (it releases them) or the test kills it."""
    argv = [sys.executable, "-c", HOLDER, str(store.prefix), str(scratch), str(iid), *names]
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the holder failed: {process.communicate()[1]}")
        yield process, line.split()
    finally:
        if process.poll() is None:
            process.communicate("", timeout=30)
        else:  # the test killed it: its pipes are ours to close
            close_pipes(process)


def test_a_second_process_is_refused_a_persistent_image(
    disks: DiskManager, store: ImageStore
) -> None:
    with node_manager(store, disks.scratch_dir, 6, "base.qcow2!"):
        with pytest.raises(InvalidState, match="in use by another VM"):
            disks.prepare(I5, [persistent("base.qcow2")])
        with pytest.raises(InvalidState):
            disks.prepare(I5, [nonpersistent("base.qcow2")])
    disks.prepare(I5, [persistent("base.qcow2")]).release()  # released with the holder


def test_a_killed_node_manager_drops_its_locks_and_a_new_one_adopts(
    disks: DiskManager, store: ImageStore
) -> None:
    with node_manager(store, disks.scratch_dir, 5, "base.qcow2!", "plain.img") as (nm, paths):
        nm.send_signal(signal.SIGKILL)
        nm.wait(10)
    overlay = Path(paths[1])
    assert overlay.is_file()  # the VM's writes survive the node manager
    # The kernel dropped the dead process's locks; the restarted node manager takes them back.
    adopted = disks.adopt(I5, [persistent("base.qcow2"), nonpersistent("plain.img")])
    assert adopted.problems == ()
    assert [str(d.path) for d in adopted.disks] == paths
    with node_manager(store, disks.scratch_dir, 6, "plain.img"):
        pass  # a base is still shareable
    with (
        pytest.raises(AssertionError, match="in use by another VM"),
        node_manager(store, disks.scratch_dir, 6, "base.qcow2!"),
    ):
        pass
    assert disks.leftovers() == [I5]
    adopted.release()
    assert not overlay.exists() and disks.leftovers() == []


def test_adopt_reports_what_it_cannot_take_back(disks: DiskManager) -> None:
    other = disks.prepare(I6, [persistent("base.qcow2")])
    wanted = [persistent("base.qcow2"), nonpersistent("plain.img"), persistent("gone.qcow2")]
    adopted = disks.adopt(I5, wanted)
    # The lock is someone else's, the overlay is missing, the image was deleted meanwhile.
    assert [p.split(":")[0] for p in adopted.problems] == [
        "disk 0 (base.qcow2)",
        "disk 1 (plain.img)",
        "disk 2 (gone.qcow2)",
    ]
    assert [d.path.name for d in adopted.disks] == ["base.qcow2", "disk1.qcow2", "gone.qcow2"]
    adopted.release()
    other.release()


def test_discard_removes_what_a_lost_vm_left(disks: DiskManager) -> None:
    prepared = disks.prepare(I5, [nonpersistent("base.qcow2"), nonpersistent("plain.img")])
    for lock in prepared.locks:
        lock.release()  # as if the node manager had died
    assert disks.leftovers() == [I5]
    disks.discard(I5)
    disks.discard(I5)
    assert disks.leftovers() == [] and not disks.scratch_dir.joinpath("5").exists()


# --- QEMU's own image locks: the second guard --------------------------------------------------


@contextmanager
def qemu_on(image: Path, fmt: str) -> Iterator[subprocess.Popen[bytes]]:
    """A QEMU (not started by Tashi) with ``image`` as a writable disk; no guest code runs."""
    if shutil.which(QEMU) is None:
        raise AssertionError(f"{QEMU} is not installed: run `make test`, which does")
    process = subprocess.Popen(
        qemu_argv(image, fmt), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while _unlocked(image):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"QEMU did not lock {image}")
            time.sleep(0.05)
        yield process
    finally:
        stop_child(process, 10)


def qemu_argv(image: Path, fmt: str) -> list[str]:
    argv = [QEMU, "-M", "pc", "-S", "-nodefaults", "-display", "none", "-accel", "tcg"]
    return [*argv, "-drive", f"file={image},format={fmt},if=virtio"]


def _unlocked(image: Path) -> bool:
    done = subprocess.run(["qemu-img", "info", str(image)], capture_output=True, text=True)
    return done.returncode == 0


def test_qemus_own_lock_guards_an_image_tashi_does_not_hold(
    disks: DiskManager, store: ImageStore
) -> None:
    # The window after a node manager was SIGKILLed, before it adopted its VMs again: only
    # QEMU's lock on the image is left, and it is enough to refuse another VM early.
    prepared = disks.prepare(I5, [persistent("base.qcow2")])
    with qemu_on(prepared.disks[0].path, "qcow2"):
        for lock in prepared.locks:
            lock.release()
        for disk in (persistent("base.qcow2"), nonpersistent("base.qcow2")):
            with pytest.raises(InvalidState, match="in use by another QEMU process"):
                disks.prepare(I6, [disk])
        assert not disks.overlay_dir(I6).exists()
        adopted = disks.adopt(I5, [persistent("base.qcow2")])  # the VM itself: no problem
        assert adopted.problems == ()
        adopted.release()
    prepared.release()


def test_qemu_opens_the_overlay_and_its_base_stays_read_only(disks: DiskManager) -> None:
    prepared = disks.prepare(I5, [nonpersistent("plain.img")])
    base = disks.store.images_dir.resolve() / "plain.img"
    mtime = os.stat(base).st_mtime_ns
    with qemu_on(prepared.disks[0].path, "qcow2") as qemu:
        assert qemu.poll() is None
        with pytest.raises(InvalidState, match="in use by another VM"):  # our shared lock
            disks.prepare(I6, [persistent("plain.img")])
        for lock in prepared.locks:
            lock.release()  # as if the node manager had died: now only QEMU guards the base
        writer = disks.prepare(I6, [persistent("plain.img")])  # qemu-img info cannot tell...
        second = qemu_argv(writer.disks[0].path, "raw")
        done = subprocess.run(second, capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and 'Failed to get "write" lock' in done.stderr  # ...QEMU can
        writer.release()
        disks.prepare(I6, [nonpersistent("plain.img")]).release()  # but more readers, yes
    assert os.stat(base).st_mtime_ns == mtime
    prepared.release()
