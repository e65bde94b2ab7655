"""A small laboratory for VMM driver tests: drivers of one kind over one directory tree.

``Lab`` hands out drivers (``fake`` or ``qemu``) that share a root directory, specs of the tiny
guest (for QEMU a fresh qcow2 overlay each, under the root), and the few things a test needs to
look at from outside the contract: the console markers, the VM's cgroup, a kill from outside.
Several drivers over one lab are several node managers on one host (or one restarted).

``leftovers()`` lists what must not survive a test: qemu processes whose command line names the
lab's root, VM cgroups, sockets, pid and state files, suspend partials. The root lives under
``/tmp/tv-*`` (short, for Unix socket paths), never in a pytest ``tmp_path``. The lab's QEMU
drivers share boot slots of their own, in the root: the machine's (``/run/tashi/boot-slots``)
belong to its node managers, and a test that made them there left them behind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from tashi.config.nodemanager import QemuSettings
from tashi.devcluster.processes import wait_for
from tashi.domain.ids import InstanceId
from tashi.images import boot, markers
from tashi.vmm.base import BootSpec, DiskSpec, NicSpec, VmEvent, VmmCall, VmmDriver, VmSpec
from tashi.vmm.base import VmState as S
from tashi.vmm.fake import FakeDriver
from tashi.vmm.qemu import cgroups
from tashi.vmm.qemu.driver import QemuDriver

ROOT_PREFIX = "tv-"
BOOT_TIMEOUT = 90.0  # TCG on a busy 2-core machine; a boot takes 2-5 s
EVENT_TIMEOUT = 30.0
CGROUP_ROOT = Path(f"/sys/fs/cgroup/cpu/tashi-test-{secrets.token_hex(3)}")
_ids = iter(range(100, 1_000_000))


def next_id() -> InstanceId:
    return InstanceId(next(_ids))


@dataclass
class Lab:
    kind: str  # "fake" or "qemu"
    image: Path | None  # the tiny guest (qemu only)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix=ROOT_PREFIX)))
    settings: QemuSettings = field(
        default_factory=lambda: QemuSettings(cgroup_root=CGROUP_ROOT, migrate_timeout=60.0)
    )
    netns: str | None = None
    ids: set[int] = field(default_factory=set)  # the instance ids of this lab's specs

    def __post_init__(self) -> None:
        self.settings = replace(self.settings, boot_slot_dir=self.root / "boot-slots")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def driver(self) -> VmmDriver:
        if self.kind == "fake":
            return FakeDriver(migrate_timeout=self.settings.migrate_timeout)
        assert self.image is not None
        return QemuDriver(self.settings, images_dir=self.image.parent, netns=self.netns)

    def spec(
        self,
        instance_id: InstanceId,
        *,
        where: str | None = None,
        disks: int = 1,
        shared: tuple[bool, ...] = (),
        nics: tuple[NicSpec, ...] = (),
        cpu_share: int = 1024,
        kernel_args: str = "",
    ) -> VmSpec:
        """A spec of the tiny guest in ``<root>/<where>`` (default ``v<id>``); for QEMU each
        disk a fresh overlay on the image (``shared`` marks disks as shared, for the rule) and
        ``kernel_args`` after the image's own command line."""
        self.ids.add(int(instance_id))
        state_dir = self.root / (where or f"v{instance_id}")
        specs = []
        for index in range(disks):
            path = state_dir.with_name(f"{state_dir.name}-disk{index}.qcow2")
            if self.image is not None:
                overlay(self.image, path)
            flag = shared[index] if index < len(shared) else False
            specs.append(DiskSpec(path, shared=flag))
        direct = boot.direct_boot_of(self.image) if self.image is not None else None
        return VmSpec(
            instance_id=instance_id,
            name=f"vm{instance_id}",
            cores=1,
            memory=128,
            disks=specs,
            nics=list(nics),
            state_dir=state_dir,
            boot=BootSpec()
            if direct is None
            else BootSpec(direct.kernel, direct.initrd, f"{direct.cmdline} {kernel_args}".strip()),
            cpu_share=cpu_share,
        )

    # --- looking from outside the contract ------------------------------------------

    def cpu_share(self, status_pid: int, instance_id: InstanceId, spec_share: int) -> int:
        if self.kind == "fake":
            return spec_share
        return cgroups.share_of(CGROUP_ROOT / f"vm{int(instance_id)}-{status_pid}")

    def kill_from_outside(self, driver: VmmDriver, instance_id: InstanceId, pid: int) -> None:
        """The VM dies without the driver's doing (a crash, an operator's kill -9)."""
        if isinstance(driver, FakeDriver):
            driver.crash(instance_id)
        else:
            os.kill(pid, signal.SIGKILL)

    def kill_while_away(self, state_dir: Path, pid: int) -> None:
        """The VM dies while no driver watches it."""
        if self.kind == "fake":
            FakeDriver.kill_offline(state_dir)
        else:
            os.kill(pid, signal.SIGKILL)
            wait_for(f"pid {pid} to die", partial(_gone, pid), 10.0, 0.02, error=AssertionError)

    def leftovers(self) -> list[str]:
        found = [f"qemu pid {pid}" for pid in qemus_under(self.root)]
        found += [str(p) for p in self.root.rglob("*") if _made_by_a_driver(p)]
        return found + [str(group) for group in self._groups()]

    def _groups(self) -> list[Path]:
        """The VM cgroups of this lab's instances."""
        if self.kind != "qemu" or not CGROUP_ROOT.exists():
            return []
        return [g for g in CGROUP_ROOT.iterdir() if g.is_dir() and _group_id(g) in self.ids]

    def clean_up_after_a_failure(self) -> None:
        """Stop, by pid, whatever a failing test left running."""
        for pid in qemus_under(self.root):
            os.kill(pid, signal.SIGKILL)
            wait_for(f"pid {pid} to die", partial(_gone, pid), 10.0, 0.02, error=AssertionError)
        for group in self._groups():
            group.rmdir()


def _group_id(group: Path) -> int:
    return int(group.name.removeprefix("vm").partition("-")[0])


def overlay(image: Path, path: Path) -> None:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image), str(path)]
    subprocess.run(argv, check=True)


def _made_by_a_driver(path: Path) -> bool:
    return path.suffix in (".sock", ".pid", ".partial") or path.name in ("qemu.json", "fake.json")


def _gone(pid: int) -> bool:
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def qemus_under(root: Path) -> list[int]:
    """Live qemu processes whose command line names a path under ``root``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        named = str(root).encode() in b" ".join(argv)
        if argv[0].endswith(b"qemu-system-x86_64") and named and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


# --- async helpers over the contract ---------------------------------------------------


async def console(driver: VmmDriver, instance_id: InstanceId) -> str:
    return await driver.call(instance_id, VmmCall("console", "64"))


async def wait_marker(
    driver: VmmDriver, instance_id: InstanceId, kind: str, *, count: int = 1
) -> markers.Marker:
    """Poll the console (through the contract) until the ``count``-th marker of ``kind``."""
    deadline = asyncio.get_running_loop().time() + BOOT_TIMEOUT
    while True:
        found = [m for m in markers.scan(await console(driver, instance_id)) if m.kind == kind]
        if len(found) >= count:
            return found[count - 1]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {kind} #{count} within {BOOT_TIMEOUT} s")
        await asyncio.sleep(0.05)


async def next_exit(driver: VmmDriver, instance_id: InstanceId) -> VmEvent:
    """The next ``exited`` event of ``instance_id`` (other events are skipped)."""
    async with asyncio.timeout(EVENT_TIMEOUT):
        async for event in driver.events():
            if event.instance_id == instance_id and event.state is S.exited:
                return event
    raise AssertionError("the event stream ended")


async def no_more_events(driver: VmmDriver) -> list[VmEvent]:
    """Events that arrive within a short moment (a test of absence needs some deadline)."""
    got: list[VmEvent] = []
    try:
        async with asyncio.timeout(0.3):
            async for event in driver.events():
                got.append(event)
    except TimeoutError:
        pass
    return got
