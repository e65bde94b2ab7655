"""Fixtures of the end-to-end tests: the tiny guest image (built once per run, reused after),
and a real cluster manager with two real QEMU node managers (``qemu_nodes``)."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tashi.api.schemas import NetworkIn, UserIn
from tashi.guestimage import bootable, builder
from tashi.images import boot
from tests.e2e.harness import Cluster, wait_for
from tests.fixtures import images
from tests.scheduler import live

REPO = Path(__file__).resolve().parents[2]
tiny_image = images.tiny_image  # the session fixture, for the test packages that import it here


@pytest.fixture(scope="session")
def bootloader_image(tiny_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A qcow2 booting from its own bootloader (SYSLINUX) like a cloud image: no sidecars."""
    return bootable.make_bootable(
        builder.bzimage_of(tiny_image),  # SYSLINUX needs the bzImage, not the ELF .kernel
        boot.sidecar(tiny_image, boot.INITRD_SUFFIX),
        tmp_path_factory.mktemp("bootloader") / "tashi-syslinux.qcow2",
    )


def stock_image_store(image: Path, vfs: Path) -> str:
    """Copy the tiny image and its direct-boot sidecars into a test's image store."""
    images = vfs / "images"
    images.mkdir(parents=True, exist_ok=True)
    for path in image.parent.glob(image.name + "*"):
        shutil.copyfile(path, images / path.name)
    return image.name


def qemu_pids(c: Cluster, instance_id: int) -> set[int]:
    """The live qemu processes of this cluster that run ``instance_id`` (found by their argv:
    the instance's ``-name`` and this cluster's directory)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        mine = f"tashi-{instance_id},".encode() in line and str(c.root).encode() in line
        if mine and state != "Z":
            found.add(int(proc.name))
    return found


@contextlib.contextmanager
def qemu_nodes(
    tmp_path: Path,
    tiny_image: Path,
    *,
    frequency: float = 1.0,
    agent: bool = False,
    **cm_options: Any,
) -> Iterator[tuple[Cluster, str]]:
    """A cluster manager and node managers n1 and n2 on the QEMU driver (TCG, a private
    cgroup), with network 1 and, when ``agent``, the scheduler's account; the tiny image in
    its store. Afterwards every instance is destroyed, every daemon stopped, any qemu of the
    cluster still alive killed (a test that failed half-way) and the cgroup removed."""
    vfs = tmp_path / "vfs"
    image = stock_image_store(tiny_image, vfs)
    cgroup = Path(f"/sys/fs/cgroup/cpu/tashi-e2e-{secrets.token_hex(4)}")
    c = Cluster.start(tmp_path, vfs, **cm_options)
    # Boot slots of the test's own: the machine's (/run/tashi/boot-slots) are no test's to make.
    slots = tmp_path / "boot-slots"
    qemu = {
        "Qemu": {"accel": "tcg", "cgroupRoot": cgroup, "shutdownGrace": 20, "bootSlotDir": slots}
    }
    try:
        c.admin.add_network(NetworkIn(id=1, name="default"))
        if agent:
            c.admin.register_user(
                UserIn(name=live.AGENT, password=live.AGENT_PASSWORD, role="agent")
            )
        for name in ("n1", "n2"):
            c.add_node(name, vmm="qemu", network="fake", frequency=frequency, extra=qemu)
        yield c, image
    finally:
        with contextlib.suppress(Exception):
            for inst in c.admin.get_instances():
                c.admin.destroy_vm(inst.id, force=True)
        c.stop()
        for iid in range(1, 20):
            for pid in qemu_pids(c, iid):
                os.kill(pid, signal.SIGKILL)
        if cgroup.exists():
            for child in cgroup.iterdir():
                if child.is_dir():
                    wait_for(f"{child} to empty", functools.partial(_empty, child), timeout=10)
                    child.rmdir()
            cgroup.rmdir()


def _empty(cgroup: Path) -> bool:
    return not (cgroup / "tasks").read_text().strip()
