"""The node benchmarks' system under test: a real ``tashi-cm`` and ``tashi-nm`` processes whose
QEMU driver boots the tiny guest under TCG, all on this machine and on loopback.

It is the shared harness's ``tashi.devcluster.harness.Loopback``, as the end-to-end tests'
cluster is (``tests/e2e/harness.py``), run in the style a benchmark that can be interrupted
needs: each daemon runs in a session of its own (a Ctrl-C
reaches only the benchmark, which then stops them in order), waits have deadlines and raise
``BenchError``, and ``stop()`` leaves nothing behind: every instance destroyed through the
cluster manager, the node managers and the cluster manager stopped by pid, any qemu still
running from the workspace stopped by pid, and the private ``[Qemu] cgroupRoot`` removed.

``nodes.py`` starts one cluster per run; ``boot.py``, ``migrate.py`` and ``nmmemory.py`` drive it
through the client SDK and read the files the driver writes (``VmPaths``).
"""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.cluster import BenchError, Workspace
from tashi.api import paths
from tashi.api.schemas import NetworkIn
from tashi.devcluster import processes
from tashi.devcluster.harness import Loopback, Style, start_manager
from tashi.devcluster.processes import Daemon, rss_mb, stop_pid
from tashi.guestimage import builder
from tashi.vmm.qemu.cmdline import VmPaths

__all__ = ["HEARTBEAT", "NodeCluster", "rss_mb", "tiny_image", "wait_for"]

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
CGROUP_PARENT = Path("/sys/fs/cgroup/cpu")
STARTUP_TIMEOUT = 60.0
DESTROY_TIMEOUT = 60.0
HEARTBEAT = 1.0  # [NodeManagerService] registerFrequency, seconds
# A daemon in a session of its own (a Ctrl-C reaches only the benchmark), configs 0600 (they
# hold a password), failures raised as BenchError.
BENCH = Style(error=BenchError, new_session=True, startup_timeout=STARTUP_TIMEOUT, private=True)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.02) -> T:
    """Poll ``probe`` until it returns something truthy; ``BenchError`` after ``timeout``."""
    return processes.wait_for(what, probe, timeout, every, error=BenchError)


def tiny_image(say: Callable[[str], None]) -> Path:
    """The tiny guest (``var/images/tashi-tiny.qcow2``), built first if it is missing."""
    result = builder.build(builder.BuildOptions(out_dir=REPO / "var" / "images"), say=say)
    if not builder.is_complete(result.image):
        raise BenchError(f"the tiny guest image {result.image} is incomplete")
    return result.image


@dataclass(kw_only=True)
class NodeCluster(Loopback):
    """A cluster manager and QEMU node managers in ``workspace``; see the module doc."""

    workspace: Workspace
    image: str  # the tiny guest's name in the image store
    token: str  # the admin's bearer token, for the one call the SDK lacks (history)
    cgroup_root: Path
    qemu_options: dict[str, object] = field(default_factory=dict)  # more [Qemu] settings

    @classmethod
    def start(cls, workspace: Workspace, image: Path) -> NodeCluster:
        root = workspace.subdir("cluster")
        vfs = root / "vfs"
        (vfs / "images").mkdir(parents=True)
        for path in image.parent.glob(image.name + "*"):  # the image and its boot sidecars
            shutil.copyfile(path, vfs / "images" / path.name)
        # The memory phase runs 20 tiny guests on one node of this 2-core machine:
        # over-commit cores, as tashi-cluster does, or activateVm's claim refuses them.
        password = secrets.token_urlsafe(16)
        options = {"cpuCoresOverRate": 16.0}
        cm, admin = start_manager(root, vfs, password, style=BENCH, options=options)
        cgroup_root = CGROUP_PARENT / f"{workspace.root.name}-vms"
        cluster = cls(
            root=root,
            vfs=vfs,
            cm=cm,
            admin=admin,
            node_password=password,
            style=BENCH,
            workspace=workspace,
            image=image.name,
            token="",
            cgroup_root=cgroup_root,
        )
        try:
            cluster.token = admin.login().token
            admin.add_network(NetworkIn(id=1, name="default"))
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def add_node(self, name: str) -> Daemon:  # type: ignore[override]
        """Start a ``tashi-nm`` named ``name`` (QEMU driver, TCG) and wait until its host is up."""
        qemu: dict[str, object] = {
            "accel": "tcg",
            "cgroupRoot": self.cgroup_root,
            # the run's node managers share boot slots of their own, gone with the
            # workspace (the machine's /run/tashi/boot-slots stayed after a run)
            "bootSlotDir": self.root / "boot-slots",
            **self.qemu_options,
        }
        return super().add_node(name, vmm="qemu", frequency=HEARTBEAT, extra={"Qemu": qemu})

    def vm_paths(self, node: str, instance_id: int) -> VmPaths:
        """The files the QEMU driver keeps for a VM: ``<stateDir>/vms/<id>/`` of its node."""
        return VmPaths(self.nodes[node].root / "state" / "vms" / str(instance_id))

    def overlay(self, node: str, instance_id: int) -> Path:
        """The node-local overlay of the VM's first disk (``DiskManager.overlay_dir``)."""
        return self.nodes[node].root / "scratch" / str(instance_id) / "disk0.qcow2"

    def destroy(self, ref: int | str) -> None:
        """Destroy an instance through the cluster manager and wait until it is gone."""
        self.admin.destroy_vm(ref)
        wait_for(f"instance {ref} to be gone", lambda: self._gone(ref), DESTROY_TIMEOUT)

    def _gone(self, ref: int | str) -> bool:
        return not any(ref in (i.id, i.name) for i in self.admin.get_instances())

    def history(self, ref: int | str) -> list[dict[str, Any]]:
        """``GET /v1/instances/{ref}/history``: the instance's history lines, oldest first."""
        url = self.admin.base_url + paths.INSTANCE_HISTORY.format(ref=ref)
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.get(url, headers=headers, params={"limit": 10000}, timeout=10.0)
        if response.status_code != 200:
            raise BenchError(f"history of {ref}: {response.status_code} {response.text[:300]}")
        lines: list[dict[str, Any]] = response.json()
        return sorted(lines, key=lambda line: int(line["id"]))

    def stop(self) -> None:
        """Destroy every instance, stop the daemons, then anything left; remove the cgroups."""
        problems: list[str] = []
        try:
            for inst in self.admin.get_instances():
                self.admin.destroy_vm(inst.id, force=True)
            wait_for("every instance to be gone", lambda: not self.admin.get_instances(), 60.0)
        except Exception as exc:  # noqa: BLE001  # clean-up goes on; the strays are stopped below
            problems.append(f"destroying the instances: {exc}")
        super().stop()  # the daemons by pid, their watchdogs; the admin client closed
        for pid in self.workspace.strays():  # a qemu the destroys above did not reach
            problems.append(f"stopped a leftover process {pid}")
            stop_pid(pid)
        problems += remove_cgroups(self.cgroup_root)
        if problems:
            print("clean-up: " + "; ".join(problems), file=sys.stderr, flush=True)


def remove_cgroups(root: Path) -> list[str]:
    """Remove the private cgroup root and the VM groups under it; what could not be removed."""
    if not root.exists():
        return []
    left: list[str] = []
    for group in [*(p for p in root.iterdir() if p.is_dir()), root]:
        try:
            group.rmdir()
        except OSError as exc:
            left.append(f"cannot remove cgroup {group}: {exc.strerror}")
    return left
