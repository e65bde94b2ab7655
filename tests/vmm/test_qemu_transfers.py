"""A node manager SIGKILLed in the middle of a suspend or a live migration: QEMU goes on
sending, and the next node manager's driver adopts the VM ``migrating``, with what it was
sending, and ``finish_outgoing`` ends the transfer as the dead one would have — or runs the
VM on when the transfer cannot be finished.

The dead node manager is a small script (one driver, one VM) whose transfers crawl at
1 MB/s, so that it is surely killed while QEMU sends; the driver that takes over lets the
rest go at full speed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from tashi.devcluster.processes import kill_child
from tashi.domain.errors import BackendFailure, InvalidState
from tashi.runtime.ports import free_port
from tashi.vmm import statefile
from tashi.vmm.base import ExitReason, MigrationTicket, Sending, VmmDriver, VmSpec
from tashi.vmm.base import VmState as S
from tests.vmm.lab import CGROUP_ROOT, Lab, next_exit, next_id, qemus_under

pytestmark = pytest.mark.anyio

# Starts one VM, sends it (suspend to a file, or migrate to host:port) at 1 MB/s, says
# "sending" once QEMU has sent the first bytes, and waits to be killed; or ("restore") restores
# the VM from a suspend file, says so once QEMU has loaded it, and waits to be killed.
_SENDING = """
import asyncio, json, sys
from pathlib import Path
from tashi.config.nodemanager import QemuSettings
from tashi.vmm import statefile
from tashi.vmm.base import MigrationTicket
from tashi.vmm.qemu.driver import QemuDriver

async def main() -> None:
    spec = statefile.spec_from_json(json.loads(sys.argv[1]))
    cgroups, slots, kind, where = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5]
    settings = QemuSettings(
        accel="tcg", cgroup_root=cgroups, boot_slot_dir=slots, migrate_bandwidth=1
    )
    driver = QemuDriver(settings)
    if kind == "restore":  # restore until QEMU has loaded the state; never run the VM
        await driver.start(spec, incoming=Path(where))
        monitor = driver._vms[spec.instance_id].monitor
        while (await monitor.execute("query-status"))["status"] == "inmigrate":
            await asyncio.sleep(0.01)
        print("sending", flush=True)
        await asyncio.Event().wait()
    await driver.start(spec)
    if kind == "suspend":
        work = driver.suspend(spec.instance_id, Path(where))
    else:
        host, port = where.split(":")
        work = driver.migrate(spec.instance_id, MigrationTicket(host, int(port)))
    task = asyncio.create_task(work)
    monitor = driver._vms[spec.instance_id].monitor
    while True:
        info = await monitor.execute("query-migrate")
        if info.get("status") == "active" and info.get("ram", {}).get("transferred", 0) > 0:
            break
        await asyncio.sleep(0.01)
    print("sending", flush=True)
    await task

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def kind() -> str:
    return "qemu"


def killed_while_sending(lab: Lab, spec: VmSpec, kind: str, where: str) -> None:
    argv = [sys.executable, "-c", _SENDING, json.dumps(statefile.spec_to_json(spec))]
    argv += [str(CGROUP_ROOT), str(lab.settings.boot_slot_dir), kind, where]
    manager = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert manager.stdout is not None
        assert manager.stdout.readline().strip() == "sending"
    finally:
        kill_child(manager)


async def test_a_suspend_cut_short_is_finished_by_the_next_node_manager(lab: Lab) -> None:
    spec = lab.spec(next_id())
    target = lab.root / "saved.gz"
    await asyncio.to_thread(killed_while_sending, lab, spec, "suspend", str(target))
    [pid] = qemus_under(lab.root)

    driver = lab.driver()
    [adopted] = await driver.adopt([spec.state_dir])
    assert (adopted.vm_id, adopted.state, adopted.sending) == (
        pid,
        S.migrating,
        Sending("suspend", target),
    )
    await driver.finish_outgoing(spec.instance_id)
    assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.suspended
    assert target.read_bytes()[:2] == b"\x1f\x8b"
    assert not target.with_name("saved.gz.partial").exists()
    assert qemus_under(lab.root) == []

    back = lab.spec(spec.instance_id, where="back")
    await driver.start(back, incoming=target)
    assert (await driver.finish_incoming(spec.instance_id)).state is S.running
    await driver.destroy(spec.instance_id)
    await driver.close()


async def migrating_when_killed(lab: Lab) -> tuple[VmSpec, VmmDriver]:
    """A VM's node manager killed while it migrated the VM to a prepared target (this process's
    driver): the VM's spec on the source, and the target's driver."""
    spec = lab.spec(next_id())
    target = lab.driver()
    ticket = MigrationTicket("127.0.0.1", free_port())
    await target.start(lab.spec(spec.instance_id, where="target"), incoming=ticket)
    where = f"{ticket.host}:{ticket.port}"
    await asyncio.to_thread(killed_while_sending, lab, spec, "migrate", where)
    return spec, target


async def test_a_migration_cut_short_is_finished_by_the_next_node_manager(lab: Lab) -> None:
    spec, target = await migrating_when_killed(lab)

    source = lab.driver()
    [adopted] = await source.adopt([spec.state_dir])
    assert (adopted.state, adopted.sending) == (S.migrating, Sending("migrate"))
    await source.finish_outgoing(spec.instance_id)
    assert (await next_exit(source, spec.instance_id)).reason is ExitReason.migrated
    assert (await target.finish_incoming(spec.instance_id)).state is S.running
    await target.destroy(spec.instance_id)
    await source.close()
    await target.close()


async def test_a_migration_whose_target_is_gone_runs_on_at_the_source(lab: Lab) -> None:
    spec, target = await migrating_when_killed(lab)
    await target.destroy(spec.instance_id)  # the cluster manager gave up on the target

    source = lab.driver()
    await source.adopt([spec.state_dir])
    with pytest.raises(BackendFailure):
        await source.finish_outgoing(spec.instance_id)
    [status] = await source.list()
    assert (status.state, status.sending) == (S.running, None)
    with pytest.raises(InvalidState):  # nothing left to finish
        await source.finish_outgoing(spec.instance_id)
    again = lab.driver()  # and a restart now finds a VM that simply runs
    await source.close()
    [adopted] = await again.adopt([spec.state_dir])
    assert (adopted.state, adopted.sending) == (S.running, None)
    await again.destroy(spec.instance_id)
    await again.close()
    await target.close()


async def test_a_restore_cut_short_is_still_incoming_for_the_next_node_manager(
    lab: Lab,
) -> None:
    """Killed after QEMU loaded a restored VM's state, before it ran the VM: QEMU says
    ``paused``, yet the next driver adopts it ``incoming`` (as it would while QEMU still
    loads), so that ``finish_incoming`` runs it (the node manager does so for a resume it
    finds)."""
    driver = lab.driver()
    spec = lab.spec(next_id())
    await driver.start(spec)
    saved = lab.root / "saved.gz"
    await driver.suspend(spec.instance_id, saved)
    assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.suspended
    back = lab.spec(spec.instance_id, where="back")
    await asyncio.to_thread(killed_while_sending, lab, back, "restore", str(saved))

    [adopted] = await driver.adopt([back.state_dir])
    assert adopted.state is S.incoming
    assert (await driver.finish_incoming(spec.instance_id)).state is S.running
    again = lab.driver()  # once run, it is an ordinary running VM to the next restart
    await driver.close()
    [running] = await again.adopt([back.state_dir])
    assert running.state is S.running
    await again.destroy(spec.instance_id)
    await again.close()
