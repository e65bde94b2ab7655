"""The node manager on real QEMU: a real cluster manager and two real node managers (QEMU
driver, TCG) as processes, driven through the client SDK like a user would.

One scenario walks every lifecycle verb on one VM (so the guest boots only a few times), and
checks at the end that no qemu process, cgroup or VM directory is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api.schemas import DiskIn, InstanceIn, InstanceOut
from tashi.domain.errors import TashiError
from tests.e2e.conftest import qemu_nodes, qemu_pids
from tests.e2e.harness import Cluster, wait_for

BOOT_TIMEOUT = 60.0


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def qemu_cluster(tmp_path: Path, tiny_image: Path) -> Iterator[tuple[Cluster, str]]:
    with qemu_nodes(tmp_path, tiny_image, expireHostTime=5.0, reconcileGrace=2.0) as cluster:
        yield cluster


def vmm_calls(c: Cluster) -> None:
    call = c.admin.vmm_specific_call
    assert "startVnc" in call("tiny", "list").message
    vnc = call("tiny", "startVnc").message
    assert "password" in vnc.lower()
    call("tiny", "stopVnc")
    assert call("tiny", "changeCdrom:tashi-tiny.qcow2").message
    with pytest.raises(TashiError, match="not an image name"):
        call("tiny", "changeCdrom:../../etc/passwd")
    with pytest.raises(TashiError, match="unknown VMM operation"):
        call("tiny", "rootShell")


def cgroup_root(c: Cluster) -> str:
    text = (c.nodes["n1"].config).read_text()
    return next(
        line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("cgroupRoot")
    )


def console(c: Cluster, ref: str) -> str:
    return c.admin.vmm_specific_call(ref, "console").message


def test_every_verb_on_a_real_vm(qemu_cluster: tuple[Cluster, str]) -> None:
    c, image = qemu_cluster
    vm = c.admin.create_vm(InstanceIn(name="tiny", memory=128, disks=[DiskIn(uri=image)], nics=[]))
    started = c.admin.activate_vm(vm.id, "n1")
    assert started.state == "Running"
    pids = {started.vmId}
    wait_for(
        "the guest to boot",
        lambda: "TASHI-GUEST-UP" in console(c, "tiny"),
        timeout=BOOT_TIMEOUT,
        every=0.5,
    )

    assert c.admin.pause_vm("tiny").state == "Paused"
    assert c.admin.unpause_vm("tiny").state == "Running"
    vmm_calls(c)
    assert c.admin.adapt_cpu_share("tiny", 1500).cpuShare == 1500
    shares = list(Path(cgroup_root(c)).glob(f"vm{vm.id}-*/cpu.shares"))
    assert [int(p.read_text()) for p in shares] == [1500]

    n2 = c.admin.get_host("n2").id
    assert c.admin.migrate_vm("tiny", "n2").state == "MigrateTrans"
    wait_for("the migration", lambda: c.admin.get_instance("tiny").state == "Running", timeout=60)
    moved = c.admin.get_instance("tiny")
    assert moved.hostId == n2
    pids.add(moved.vmId)
    wait_for("the source VM to end", lambda: not alive(started.vmId or 0), timeout=10)

    c.admin.suspend_vm("tiny")
    wait_for("the suspend", lambda: c.admin.get_instance("tiny").state == "Suspended", timeout=60)
    c.cm.stop()
    c.cm.start()  # a Suspended VM stays resumable across a cluster-manager restart
    assert c.admin.get_instance("tiny").state == "Suspended"
    assert c.admin.resume_vm("tiny").state == "Pending"
    c.admin.activate_vm("tiny", "n1")
    wait_for("the restore", lambda: c.admin.get_instance("tiny").state == "Running", timeout=60)
    restored = c.admin.get_instance("tiny")
    pids.add(restored.vmId)

    node = c.nodes["n1"]
    node.kill()  # SIGKILL: the VM must keep running and be re-attached
    assert alive(restored.vmId or 0)
    node.start()
    wait_for("n1 back up", lambda: c.host_up("n1"))
    assert c.admin.get_instance("tiny").vmId == restored.vmId
    # The restarted node manager drives the VM it re-attached to (through its QMP socket).
    assert c.admin.pause_vm("tiny").state == "Paused"
    assert c.admin.unpause_vm("tiny").state == "Running"

    c.admin.shutdown_vm("tiny")  # ACPI: the guest powers itself off
    wait_for("the shutdown", lambda: not c.admin.get_instances(name="tiny"), timeout=60)
    for pid in pids:
        assert pid is None or not alive(pid)
    for name in ("n1", "n2"):
        vms = c.root / name / "state" / "vms"
        assert not vms.exists() or not any(vms.iterdir()), f"{name} left VM directories"


def boot(c: Cluster, image: str, name: str, host: str) -> InstanceOut:
    vm = c.admin.create_vm(InstanceIn(name=name, memory=128, disks=[DiskIn(uri=image)], nics=[]))
    running = c.admin.activate_vm(vm.id, host)
    wait_for(
        f"{name} to boot",
        lambda: "TASHI-GUEST-UP" in console(c, name),
        timeout=BOOT_TIMEOUT,
        every=0.5,
    )
    return running


def settled_once(c: Cluster, name: str, *expect: str) -> None:
    """After a CM restart mid-migration: Running, by exactly one qemu, the one the store names,
    and the history says which way it went."""
    wait_for(f"{name} settled", lambda: c.admin.get_instance(name).state == "Running", 60)
    inst = c.admin.get_instance(name)
    assert qemu_pids(c, inst.id) == {inst.vmId}
    history = " | ".join(e.message for e in c.admin.get_instance_history(name))
    assert any(e in history for e in expect), history
    assert c.admin.pause_vm(name).state == "Paused"  # the host that has it drives it
    assert c.admin.unpause_vm(name).state == "Running"
    c.admin.destroy_vm(name)
    wait_for(f"{name} gone", lambda: not qemu_pids(c, inst.id), timeout=30)


def test_a_finished_migration_survives_a_cluster_manager_crash(
    qemu_cluster: tuple[Cluster, str],
) -> None:
    """The source sent the VM but the CM died before telling the target to run it (the
    target's node manager is frozen so the CM cannot): once the CM is back, the target's
    copy runs and the store says so — the only copy is never given up."""
    c, image = qemu_cluster
    source = boot(c, image, "mover", "n1")
    target = c.nodes["n2"]
    assert c.admin.migrate_vm("mover", "n2").state == "MigrateTrans"
    os.kill(target.pid, signal.SIGSTOP)
    try:
        wait_for("the source to send it", lambda: not alive(source.vmId or 0), timeout=60)
        c.cm.kill()
    finally:
        os.kill(target.pid, signal.SIGCONT)
    c.cm.start()
    settled_once(c, "mover", "finished by asking both hosts")


def test_a_migration_cut_short_survives_a_cluster_manager_crash(
    qemu_cluster: tuple[Cluster, str],
) -> None:
    """The CM dies while the source's node manager is frozen: the request to send may or may
    not reach the source once it thaws, so either end is right — but the VM runs exactly once,
    where the store says. (The unit tests in tests/clustermanager cover each end exactly.)"""
    c, image = qemu_cluster
    boot(c, image, "stayer", "n1")
    source = c.nodes["n1"]
    os.kill(source.pid, signal.SIGSTOP)
    try:
        assert c.admin.migrate_vm("stayer", "n2").state == "MigrateTrans"
        c.cm.kill()
    finally:
        os.kill(source.pid, signal.SIGCONT)
    c.cm.start()
    settled_once(c, "stayer", "still on n1", "finished by asking both hosts")


def test_two_vms_never_open_one_persistent_image(qemu_cluster: tuple[Cluster, str]) -> None:
    c, image = qemu_cluster
    disk = [DiskIn(uri=image, persistent=True)]
    first = c.admin.create_vm(InstanceIn(name="writer", disks=disk, nics=[]))
    second = c.admin.create_vm(InstanceIn(name="intruder", disks=disk, nics=[]))
    assert c.admin.activate_vm(first.id, "n1").state == "Running"
    with pytest.raises(TashiError) as refused:
        c.admin.activate_vm(second.id, "n2")
    assert image in refused.value.message
    held = c.admin.get_instance("intruder")
    assert (held.state, held.hostId) == ("Held", None)
    assert image in (held.reason or "")


def test_a_silent_host_orphans_its_vms_until_it_returns(qemu_cluster: tuple[Cluster, str]) -> None:
    c, image = qemu_cluster
    vm = c.admin.create_vm(InstanceIn(name="lonely", disks=[DiskIn(uri=image)], nics=[]))
    running = c.admin.activate_vm(vm.id, "n1")
    node = c.nodes["n1"]
    node.kill()
    wait_for("n1 to be marked down", lambda: not c.host_up("n1"), timeout=30)
    assert c.admin.get_instance("lonely").state == "Orphaned"
    assert alive(running.vmId or 0)  # the VM itself never stopped
    node.start()
    wait_for(
        "the VM re-attached", lambda: c.admin.get_instance("lonely").state == "Running", timeout=30
    )
    assert c.admin.get_instance("lonely").vmId == running.vmId
    kinds = [e.kind for e in c.admin.get_instance_history("lonely")]
    assert "hostLost" in kinds
    assert "reattach" in kinds


def test_vms_boot_from_their_own_copies_of_a_template(qemu_cluster: tuple[Cluster, str]) -> None:
    c, image = qemu_cluster
    disk = [DiskIn(uri=image, copy_=True)]  # SLA@SOI image copy: one persistent copy each
    first = c.admin.create_vm(InstanceIn(name="mine", disks=disk, nics=[]))
    second = c.admin.create_vm(InstanceIn(name="yours", disks=disk, nics=[]))
    assert c.admin.activate_vm(first.id, "n1").state == "Running"
    assert c.admin.activate_vm(second.id, "n2").state == "Running"  # the template is only read
    wait_for(
        "the guest to boot from its copy",
        lambda: "TASHI-GUEST-UP" in console(c, "mine"),
        timeout=BOOT_TIMEOUT,
        every=0.5,
    )
    images = {i.imageName for i in c.admin.get_images()}
    for vm in (first, second):
        [own] = c.admin.get_instance(vm.id).disks
        assert (own.uri, own.persistent, own.copy_) == (
            f"{vm.name}-{vm.id}-disk0.qcow2",
            True,
            False,
        )
        assert own.uri in images
    kinds = [e.kind for e in c.admin.get_instance_history("mine")]
    assert "diskCopy" in kinds


def test_an_image_with_its_own_bootloader_boots(
    qemu_cluster: tuple[Cluster, str], bootloader_image: Path
) -> None:
    c, _ = qemu_cluster
    image = bootloader_image.name  # a user's own image: a disk with a bootloader, no sidecars
    shutil.copyfile(bootloader_image, c.vfs / "images" / image)
    assert sorted(p.name for p in (c.vfs / "images").glob(image + "*")) == [image]
    vm = c.admin.create_vm(InstanceIn(name="own", memory=128, disks=[DiskIn(uri=image)], nics=[]))
    assert c.admin.activate_vm(vm.id, "n1").state == "Running"
    wait_for(
        "the guest to boot through SYSLINUX",
        lambda: "TASHI-GUEST-UP" in console(c, "own"),
        timeout=BOOT_TIMEOUT,
        every=0.5,
    )
    text = console(c, "own")
    assert "SYSLINUX" in text  # SeaBIOS ran the disk's boot code: no -kernel was given
    assert "root=initramfs" in text
