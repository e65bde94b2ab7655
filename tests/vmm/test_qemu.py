"""What only the QEMU driver has: real processes, a real kill of the node manager, taps in a
namespace, launch errors, cgroups that are not there, VNC on TCP, uncompressed suspends.

Most tests here do not wait for the guest to boot: qemu serves QMP, VNC and migrations from its
first moment, so they cost a fraction of a second each. The two that need the guest's userspace
(its DHCP lease, its clock after a restart) wait for its markers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tashi.config.nodemanager import QemuSettings
from tashi.devcluster.processes import kill_child
from tashi.domain.errors import AlreadyExists, BackendFailure, InvalidInput, Unavailable
from tashi.images import markers
from tashi.vmm import statefile
from tashi.vmm.base import (
    Capability,
    DiskSpec,
    ExitReason,
    NicSpec,
    VmmCall,
    VmmDriver,
    VmSpec,
    VmStatus,
)
from tashi.vmm.base import VmState as S
from tashi.vmm.qemu import bootslots, process
from tashi.vmm.qemu.cmdline import VmPaths
from tashi.vmm.qemu.driver import QemuDriver
from tests.images.guests import SUBNET, PrivateNetwork, random_mac, require_programs
from tests.vmm.lab import (
    BOOT_TIMEOUT,
    CGROUP_ROOT,
    Lab,
    console,
    next_exit,
    next_id,
    qemus_under,
    wait_marker,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def kind() -> str:
    return "qemu"


# A node manager in miniature: starts one VM, says its pid, and waits to be killed.
_NODE_MANAGER = """
import asyncio, json, sys
from pathlib import Path
from tashi.config.nodemanager import QemuSettings
from tashi.vmm import statefile
from tashi.vmm.qemu.driver import QemuDriver

async def main() -> None:
    spec = statefile.spec_from_json(json.loads(sys.argv[1]))
    cgroup, slots = Path(sys.argv[2]), Path(sys.argv[3])
    driver = QemuDriver(QemuSettings(accel="tcg", cgroup_root=cgroup, boot_slot_dir=slots))
    status = await driver.start(spec)
    print(status.vm_id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_vm_outlives_a_node_manager_killed_with_sigkill(lab: Lab) -> None:
    spec = lab.spec(next_id())
    argv = [sys.executable, "-c", _NODE_MANAGER]
    argv += [json.dumps(statefile.spec_to_json(spec)), str(CGROUP_ROOT)]
    argv += [str(lab.settings.boot_slot_dir)]
    manager = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert manager.stdout is not None
        pid = int(await asyncio.to_thread(manager.stdout.readline))
    finally:
        kill_child(manager)
    assert qemus_under(lab.root) == [pid]

    driver = lab.driver()
    [status] = await driver.adopt([spec.state_dir])
    assert (status.vm_id, status.state) == (pid, S.running)
    await wait_marker(driver, spec.instance_id, markers.UP)  # it went on booting meanwhile
    assert lab.cpu_share(pid, spec.instance_id, 0) == 1024  # and kept its cgroup
    await driver.destroy(spec.instance_id)
    assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.destroyed
    await driver.close()


async def test_a_node_manager_killed_while_qemu_starts_finds_it_by_its_pid_file(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    status = await driver.start(spec)
    await driver.close()
    paths = VmPaths(spec.state_dir)
    doc = statefile.read(paths.state)
    assert doc is not None
    statefile.write(paths.state, {"spec": doc["spec"], "pid": None, "boot_id": doc["boot_id"]})

    again = lab.driver()
    with pytest.raises(AlreadyExists):  # a live qemu there is never started over
        await again.start(spec)
    [adopted] = await again.adopt([spec.state_dir])
    assert adopted.vm_id == status.vm_id
    await again.destroy(spec.instance_id)
    await again.close()


async def test_dhcp_on_a_tap_in_the_hosts_namespace(lab: Lab, tmp_path: Path) -> None:
    require_programs("dnsmasq", "ip", "busybox")
    mac = random_mac()
    with (
        PrivateNetwork.create() as net,
        net.dhcp_server({mac: (f"{SUBNET}.20", "vm-nic")}, tmp_path / "dnsmasq"),
    ):
        tap = net.nic(mac)
        lab.netns = net.netns
        driver = lab.driver()
        spec = lab.spec(next_id(), nics=(NicSpec(mac.upper(), 1, tap.tap),))
        await driver.start(spec)
        lease = await wait_marker(driver, spec.instance_id, markers.DHCP)
        assert (lease.iface, lease.ip, lease.hostname) == ("eth0", f"{SUBNET}.20", "vm-nic")
        assert net.ping(f"{SUBNET}.20").returncode == 0
        await driver.destroy(spec.instance_id)
        await driver.close()


async def test_a_launch_that_fails_says_why_and_leaves_nothing(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    spec = replace(spec, disks=[DiskSpec(lab.root / "missing.qcow2")])
    with pytest.raises(BackendFailure, match=r"missing\.qcow2"):
        await driver.start(spec)
    assert await driver.list() == []
    assert {p.name for p in spec.state_dir.iterdir()} <= {"qemu.log", "console.log"}
    await driver.close()


async def test_without_cgroups_the_driver_has_no_cpu_share(lab: Lab, tmp_path: Path) -> None:
    lab.settings = replace(lab.settings, cgroup_root=tmp_path / "not-a-cgroup" / "tashi")
    driver = lab.driver()
    assert Capability.cpu_share not in driver.capabilities
    assert Capability.suspend in driver.capabilities
    spec = lab.spec(next_id())
    await driver.start(spec)
    with pytest.raises(Unavailable):
        await driver.set_cpu_share(spec.instance_id, 512)
    await driver.destroy(spec.instance_id)
    await driver.close()


async def test_vnc_on_tcp_when_a_vnc_host_is_set(lab: Lab) -> None:
    lab.settings = replace(lab.settings, vnc_host="127.0.0.1")
    driver = lab.driver()
    spec = lab.spec(next_id())
    await driver.start(spec)
    reply = await driver.call(spec.instance_id, VmmCall("startVnc"))
    port = int(reply.split("127.0.0.1:")[1].split(",")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await reader.readexactly(12) == b"RFB 003.008\n"
    writer.close()
    await driver.call(spec.instance_id, VmmCall("stopVnc"))
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await driver.destroy(spec.instance_id)
    await driver.close()


async def test_vnc_is_a_unix_socket_by_default(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    await driver.start(spec)
    reply = await driver.call(spec.instance_id, VmmCall("startVnc"))
    vnc = spec.state_dir / "vnc.sock"
    assert str(vnc) in reply and "ssh -L" in reply
    with socket.socket(socket.AF_UNIX) as viewer:
        viewer.connect(str(vnc))
        assert viewer.recv(12) == b"RFB 003.008\n"
    assert oct(spec.state_dir.stat().st_mode & 0o777) == "0o700"  # root's only
    await driver.destroy(spec.instance_id)
    await driver.close()


async def test_an_uncompressed_suspend_resumes_too(lab: Lab) -> None:
    lab.settings = replace(lab.settings, suspend_compression="none")
    driver = lab.driver()
    spec = lab.spec(next_id())
    await driver.start(spec)
    saved = lab.root / "raw.state"
    await driver.suspend(spec.instance_id, saved)
    assert saved.read_bytes()[:2] != b"\x1f\x8b"
    assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.suspended
    await driver.start(lab.spec(spec.instance_id, where="back"), incoming=saved)
    assert (await driver.finish_incoming(spec.instance_id)).state is S.running
    await driver.destroy(spec.instance_id)
    await driver.close()


async def test_a_vm_that_stops_by_itself_is_news(lab: Lab) -> None:
    driver = lab.driver()
    assert isinstance(driver, QemuDriver)
    spec = lab.spec(next_id())
    await driver.start(spec)
    # A stop nobody asked the driver for (as QEMU does on a disk error with werror=stop).
    await driver._vms[spec.instance_id].monitor.execute("stop")
    async with asyncio.timeout(10):
        event = await anext(aiter(driver.events()))
    assert (event.instance_id, event.state) == (spec.instance_id, S.paused)
    assert [s.state for s in await driver.list()] == [S.paused]
    await driver.unpause(spec.instance_id)  # a command: no event of its own
    assert [s.state for s in await driver.list()] == [S.running]
    await driver.destroy(spec.instance_id)
    assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.destroyed
    await driver.close()


async def test_host_info_offers_memory_less_the_reserve(lab: Lab) -> None:
    memory, cores = await lab.driver().host_info()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    assert abs(memory - (total - lab.settings.reserved_mem)) <= 1
    assert cores == os.cpu_count()


@pytest.mark.parametrize(
    "bad",
    [
        QemuSettings(accel="fast"),
        QemuSettings(suspend_compression="bzip2"),
        QemuSettings(boot_slots="many"),
    ],
)
def test_settings_are_checked_at_start_up(bad: QemuSettings) -> None:
    with pytest.raises(InvalidInput, match=r"\[Qemu\]"):
        QemuDriver(replace(bad, use_cgroups=False))


# --- boot slots (tashi.vmm.qemu.bootslots) ----------------------------------------------


def one_boot_slot(lab: Lab, tmp_path: Path) -> Path:
    """This lab's drivers share one boot slot of their own (not the machine's)."""
    slots = tmp_path / "slots"
    lab.settings = replace(lab.settings, boot_slots="1", boot_slot_dir=slots)
    return slots


def made_waiting(pid: int) -> bool:
    """Whether qemu was made with its CPUs stopped (-S), to wait for a boot slot."""
    return "-S" in process.cmdline_of(pid)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def end_all(driver: VmmDriver, *specs: VmSpec) -> None:
    """Destroy the VMs (each ends as destroyed), then close the driver."""
    for spec in specs:
        await driver.destroy(spec.instance_id)
        assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.destroyed
    await driver.close()


async def one_booting_one_waiting(
    lab: Lab, tmp_path: Path
) -> tuple[VmmDriver, VmSpec, VmSpec, VmStatus]:
    """A driver with one boot slot, a first VM that took it and a second that waits for it (its
    status as started)."""
    one_boot_slot(lab, tmp_path)
    driver = lab.driver()
    first, second = lab.spec(next_id()), lab.spec(next_id())
    await driver.start(first)
    return driver, first, second, await driver.start(second)


async def wait_logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    async with asyncio.timeout(BOOT_TIMEOUT):
        while not logged(caplog, text):
            await asyncio.sleep(0.05)


async def test_with_one_boot_slot_guests_boot_one_after_another(
    lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tashi.vmm.qemu.driver")
    one_boot_slot(lab, tmp_path)
    driver = lab.driver()
    specs = [lab.spec(next_id()) for _ in range(3)]
    started = [await driver.start(spec) for spec in specs]
    assert [s.state for s in started] == [S.running] * 3  # to the cluster, all run
    assert [made_waiting(s.vm_id) for s in started] == [False, True, True]
    for spec in specs:
        await wait_marker(driver, spec.instance_id, markers.UP)
    assert logged(caplog, "its CPUs run") == [
        f"instance {spec.instance_id}: boot slot 0: its CPUs run" for spec in specs[1:]
    ]
    await end_all(driver, *specs)


async def test_a_vm_paused_while_it_waits_for_a_slot_runs_when_unpaused(
    lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tashi.vmm.qemu.driver")
    driver, first, second, waiting = await one_booting_one_waiting(lab, tmp_path)
    await driver.pause(second.instance_id)
    assert [s.state for s in await driver.list() if s.instance_id == second.instance_id] == [
        S.paused
    ]
    await wait_logged(caplog, f"instance {second.instance_id}: left the boot queue")
    await wait_marker(driver, first.instance_id, markers.UP)
    assert not (await console(driver, second.instance_id)).strip()  # its CPUs never ran
    cpu = bootslots.cpu_demand_of(waiting.vm_id)
    assert cpu is not None and cpu < 1.0  # making the machine only; a boot takes more
    await driver.unpause(second.instance_id)  # no waiting now: it was the user's pause
    await wait_marker(driver, second.instance_id, markers.UP)
    await end_all(driver, first, second)


async def test_shutting_down_a_vm_that_waits_for_a_slot_ends_it_at_once(
    lab: Lab, tmp_path: Path
) -> None:
    driver, first, second, _ = await one_booting_one_waiting(lab, tmp_path)
    await driver.shutdown(second.instance_id)  # no guest to power off: qemu itself goes
    assert (await next_exit(driver, second.instance_id)).reason is ExitReason.poweroff
    await end_all(driver, first)


async def test_a_restarted_node_manager_boots_the_vms_still_waiting(
    lab: Lab, tmp_path: Path
) -> None:
    before, first, second, waiting = await one_booting_one_waiting(lab, tmp_path)
    assert made_waiting(waiting.vm_id)
    await before.close()  # the node manager goes; its VMs and its slot's lock do not stay
    after = lab.driver()
    adopted = await after.adopt([first.state_dir, second.state_dir])
    assert {(s.instance_id, s.state) for s in adopted} == {
        (first.instance_id, S.running),
        (second.instance_id, S.running),
    }
    await wait_marker(after, second.instance_id, markers.UP)
    await wait_marker(after, first.instance_id, markers.UP)
    await end_all(after, first, second)
