"""The VMM driver contract (``tashi.vmm.base``), over every driver: the fake and QEMU.

QEMU runs the tiny guest for real. One guest per driver kind is booted for the whole module and
left running between tests: each test attaches to it with a new driver object through
``adopt()``, which is exactly what a restarted node manager does, so every such test also checks
that adoption neither restarts nor disturbs the VM. Tests that end a VM start their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace

import pytest

from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    InvalidInput,
    InvalidState,
    NotFound,
    Unavailable,
)
from tashi.domain.ids import InstanceId
from tashi.images import markers
from tashi.runtime.ports import free_port
from tashi.vmm.base import VMM_OPS, ExitReason, MigrationTicket, VmmCall, VmmDriver, VmSpec
from tashi.vmm.base import VmState as S
from tests.vmm.conftest import finish_lab, make_lab
from tests.vmm.lab import (
    Lab,
    console,
    next_exit,
    next_id,
    no_more_events,
    wait_marker,
)

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Shared:
    lab: Lab
    spec: VmSpec
    pid: int
    up: markers.Marker


@pytest.fixture(scope="module")
def shared(kind: str, request: pytest.FixtureRequest) -> Iterator[Shared]:
    """One booted guest for the module, left running with no driver attached."""
    lab = make_lab(kind, request)
    spec = lab.spec(next_id())

    async def boot() -> Shared:
        driver = lab.driver()
        status = await driver.start(spec)
        up = await wait_marker(driver, spec.instance_id, markers.UP)
        await driver.close()
        return Shared(lab, spec, status.vm_id, up)

    async def stop() -> None:
        driver = lab.driver()
        await driver.adopt([spec.state_dir])
        await driver.destroy(spec.instance_id)
        await driver.close()

    try:
        yield asyncio.run(boot())
    finally:
        asyncio.run(stop())
        finish_lab(lab)


@pytest.fixture
async def host(shared: Shared) -> AsyncIterator[VmmDriver]:
    """A new driver, attached to the shared guest."""
    driver = shared.lab.driver()
    await driver.adopt([shared.spec.state_dir])
    yield driver
    await driver.close()


# --- the shared guest ------------------------------------------------------------------


async def test_adopt_reattaches_to_the_running_vm_without_restarting_it(shared: Shared) -> None:
    driver = shared.lab.driver()
    try:
        [status] = await driver.adopt([shared.spec.state_dir])
        assert (status.instance_id, status.vm_id, status.state) == (
            shared.spec.instance_id,
            shared.pid,
            S.running,
        )
        assert status.spec.memory == shared.spec.memory
        assert [d.path for d in status.spec.disks] == [d.path for d in shared.spec.disks]
        assert await driver.adopt([shared.spec.state_dir]) == [status]  # idempotent
        assert await driver.list() == [status]
        up = [
            m
            for m in markers.scan(await console(driver, status.instance_id))
            if m.kind == markers.UP
        ]
        assert up in ([], [shared.up])  # not booted again (QEMU's log may have rolled past it)
    finally:
        await driver.close()


async def test_a_directory_without_a_vm_is_skipped(lab: Lab) -> None:
    empty = lab.root / "nothing-here"
    empty.mkdir()
    driver = lab.driver()
    assert await driver.adopt([empty]) == []
    await driver.close()


async def test_pause_and_unpause_are_idempotent(host: VmmDriver, shared: Shared) -> None:
    iid = shared.spec.instance_id
    await host.pause(iid)
    await host.pause(iid)
    assert [s.state for s in await host.list()] == [S.paused]
    await host.unpause(iid)
    await host.unpause(iid)
    assert [s.state for s in await host.list()] == [S.running]
    assert await no_more_events(host) == []  # commands report by returning, not by events


async def test_starting_an_instance_that_runs_is_refused(host: VmmDriver, shared: Shared) -> None:
    with pytest.raises(AlreadyExists):
        await host.start(shared.spec)
    with pytest.raises(InvalidState):
        await host.finish_incoming(shared.spec.instance_id)


async def test_console_returns_the_end_of_the_serial_log(host: VmmDriver, shared: Shared) -> None:
    iid = shared.spec.instance_id
    assert len(await host.call(iid, VmmCall("console", "1"))) <= 1024
    with pytest.raises(InvalidInput):
        await host.call(iid, VmmCall("console", "many"))
    assert (await host.call(iid, VmmCall("list"))).split() == list(VMM_OPS)
    with pytest.raises(InvalidInput):
        await host.call(iid, VmmCall("startconsole"))  # the original's open TCP console: gone


async def test_vnc_opens_with_a_one_time_password_and_closes(
    host: VmmDriver, shared: Shared
) -> None:
    iid = shared.spec.instance_id
    opened = await host.call(iid, VmmCall.parse("startvnc"))
    assert "password" in opened
    other = await host.call(iid, VmmCall("startVnc"))
    assert opened.split("password ")[1].split()[0] != other.split("password ")[1].split()[0]
    assert "stopped" in await host.call(iid, VmmCall("stopVnc"))


async def test_change_cdrom_takes_an_image_file_and_ejects(host: VmmDriver, shared: Shared) -> None:
    iid = shared.spec.instance_id
    image = shared.lab.root / "tools.iso"
    image.write_bytes(bytes(2048 * 16))
    assert "tools.iso" in await host.call(iid, VmmCall.parse(f"changeCdrom:{image}"))
    assert "ejected" in await host.call(iid, VmmCall("changeCdrom", ""))
    for bad in ("tools.iso", str(shared.lab.root / "missing.iso"), str(shared.lab.root)):
        with pytest.raises(InvalidInput):
            await host.call(iid, VmmCall("changeCdrom", bad))


async def test_cpu_share_is_applied_and_changed_live(host: VmmDriver, shared: Shared) -> None:
    iid, pid = shared.spec.instance_id, shared.pid
    assert shared.lab.cpu_share(pid, iid, shared.spec.cpu_share) == 1024
    await host.set_cpu_share(iid, 1500)
    [status] = await host.list()
    assert status.spec.cpu_share == 1500
    assert shared.lab.cpu_share(pid, iid, status.spec.cpu_share) == 1500
    for bad in (0, 1, 262145):
        with pytest.raises(InvalidInput):
            await host.set_cpu_share(iid, bad)
    await host.set_cpu_share(iid, 1024)


async def test_reset_reboots_the_guest(host: VmmDriver, shared: Shared) -> None:
    iid = shared.spec.instance_id
    before = await console(host, iid)
    assert "reset" in await host.call(iid, VmmCall("reset"))
    seen = len([m for m in markers.scan(before) if m.kind == markers.UP])
    await wait_marker(host, iid, markers.UP, count=seen + 1)
    [status] = await host.list()
    assert (status.vm_id, status.state) == (shared.pid, S.running)


# --- errors -----------------------------------------------------------------------------


async def test_unknown_instances_are_not_found_and_destroy_is_quiet(lab: Lab) -> None:
    driver = lab.driver()
    nobody = InstanceId(999_999_999)
    ticket = MigrationTicket("127.0.0.1", free_port())
    calls = [
        driver.shutdown(nobody),
        driver.pause(nobody),
        driver.unpause(nobody),
        driver.suspend(nobody, lab.root / "x.gz"),
        driver.migrate(nobody, ticket),
        driver.finish_incoming(nobody),
        driver.finish_outgoing(nobody),
        driver.set_cpu_share(nobody, 512),
        driver.call(nobody, VmmCall("console")),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            await call
    await driver.destroy(nobody)
    with pytest.raises(NotFound):
        await driver.start(lab.spec(next_id()), incoming=lab.root / "no-such-suspend-file")
    assert await driver.list() == []
    await driver.close()


# --- ends -------------------------------------------------------------------------------


async def test_shutdown_powers_the_guest_off(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    await driver.start(spec)
    up = await wait_marker(driver, spec.instance_id, markers.UP)
    log = await power_off(driver, spec, after=up)
    assert [m.kind for m in log] == [markers.UP, markers.POWEROFF]
    await driver.destroy(spec.instance_id)  # gone already: fine
    assert await no_more_events(driver) == []
    await driver.close()


async def test_destroy_ends_the_vm_once_and_again_is_fine(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    await driver.start(spec)
    await driver.destroy(spec.instance_id)  # during boot: no need to wait for the guest
    assert await driver.list() == []
    assert lab.leftovers() == []
    event = await next_exit(driver, spec.instance_id)
    assert event.reason is ExitReason.destroyed
    await driver.destroy(spec.instance_id)
    assert await no_more_events(driver) == []
    await driver.close()


async def test_a_vm_that_dies_by_itself_is_reported_once(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    status = await driver.start(spec)
    lab.kill_from_outside(driver, spec.instance_id, status.vm_id)
    event = await next_exit(driver, spec.instance_id)
    assert event.reason is ExitReason.failed
    assert await driver.list() == []
    assert await no_more_events(driver) == []
    await driver.close()


async def test_adopt_cleans_up_after_a_vm_that_died_while_away(lab: Lab) -> None:
    first = lab.driver()
    spec = lab.spec(next_id())
    status = await first.start(spec)
    await first.close()
    lab.kill_while_away(spec.state_dir, status.vm_id)
    second = lab.driver()
    assert await second.adopt([spec.state_dir]) == []
    event = await next_exit(second, spec.instance_id)
    assert event.reason is ExitReason.failed
    assert lab.leftovers() == []
    await second.close()


# --- suspend and resume -----------------------------------------------------------------


async def test_suspend_to_a_file_then_resume_in_a_new_vm(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id())
    await driver.start(spec)
    up = await wait_marker(driver, spec.instance_id, markers.UP)
    saved = lab.root / "suspend" / "vm.gz"
    saved.parent.mkdir()
    await driver.suspend(spec.instance_id, saved)
    assert saved.is_file() and saved.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.suspended
    assert await driver.list() == []

    again = lab.spec(spec.instance_id, where="resumed")
    status = await driver.start(again, incoming=saved)
    assert status.state is S.incoming
    status = await driver.finish_incoming(spec.instance_id)
    assert status.state is S.running
    log = await power_off(driver, again, after=up)  # the guest's acpid still runs
    assert [m.kind for m in log] == [markers.POWEROFF]  # and it did not boot again
    await driver.close()


async def test_a_bad_suspend_file_fails_the_resume_and_ends_the_vm(lab: Lab) -> None:
    driver = lab.driver()
    bad = lab.root / "garbage"
    bad.write_bytes(b"not a saved VM\n" * 100)
    spec = lab.spec(next_id())
    await driver.start(spec, incoming=bad)
    with pytest.raises(BackendFailure):
        await driver.finish_incoming(spec.instance_id)
    assert await driver.list() == []
    assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.failed
    await driver.close()


async def test_only_a_vm_adopted_while_sending_has_a_transfer_to_finish(lab: Lab) -> None:
    """(The adoption of one that was sending: ``test_service`` with the fake, and
    ``test_qemu_transfers`` with a node manager killed while QEMU sends.)"""
    driver = lab.driver()
    spec = lab.spec(next_id())
    await driver.start(spec)
    with pytest.raises(InvalidState):
        await driver.finish_outgoing(spec.instance_id)
    assert [(s.state, s.sending) for s in await driver.list()] == [(S.running, None)]
    await driver.destroy(spec.instance_id)
    await driver.close()


async def test_disks_mixing_local_and_shared_cannot_move(lab: Lab) -> None:
    driver = lab.driver()
    spec = lab.spec(next_id(), disks=2, shared=(False, True))
    await driver.start(spec)
    with pytest.raises(Unavailable):
        await driver.suspend(spec.instance_id, lab.root / "never.gz")
    with pytest.raises(Unavailable):
        await driver.migrate(spec.instance_id, MigrationTicket("127.0.0.1", free_port()))
    assert [s.state for s in await driver.list()] == [S.running]
    assert not (lab.root / "never.gz").exists()
    await driver.destroy(spec.instance_id)
    await driver.close()


# --- live migration ---------------------------------------------------------------------


async def test_live_migration_between_two_drivers_and_a_failed_one(lab: Lab) -> None:
    source, target = lab.driver(), lab.driver()
    spec = lab.spec(next_id(), where="source")
    first = await source.start(spec)
    up = await wait_marker(source, spec.instance_id, markers.UP)

    with pytest.raises(BackendFailure):  # nobody listens there
        await source.migrate(spec.instance_id, MigrationTicket("127.0.0.1", free_port()))
    assert [(s.vm_id, s.state) for s in await source.list()] == [(first.vm_id, S.running)]

    ticket = MigrationTicket("127.0.0.1", free_port())
    arriving = await target.start(lab.spec(spec.instance_id, where="target"), incoming=ticket)
    assert arriving.state is S.incoming
    stats = await source.migrate(spec.instance_id, ticket)
    assert stats.total_seconds > 0 or lab.kind == "fake"
    assert stats.transferred_bytes and stats.transferred_bytes > 0
    assert (await next_exit(source, spec.instance_id)).reason is ExitReason.migrated
    assert await source.list() == []
    landed = await target.finish_incoming(spec.instance_id)
    assert (landed.vm_id, landed.state) == (arriving.vm_id, S.running)

    log = await power_off(target, landed.spec, after=up)
    assert [m.kind for m in log] == [markers.POWEROFF]  # not booted again on the target
    await source.close()
    await target.close()


async def test_an_incoming_vm_that_never_arrives_is_destroyed(lab: Lab) -> None:
    lab.settings = replace(lab.settings, migrate_timeout=2.0)
    target = lab.driver()
    spec = lab.spec(next_id(), disks=0)
    await target.start(spec, incoming=MigrationTicket("127.0.0.1", free_port()))
    with pytest.raises(BackendFailure):
        await target.finish_incoming(spec.instance_id)
    assert await target.list() == []
    assert (await next_exit(target, spec.instance_id)).reason is ExitReason.failed
    await target.close()


async def power_off(
    driver: VmmDriver, spec: VmSpec, *, after: markers.Marker
) -> list[markers.Marker]:
    """Shut the guest down, check it powered off (its clock past ``after``), and return the
    markers of its console log (DHCP leases aside)."""
    await driver.shutdown(spec.instance_id)
    assert [s.state for s in await driver.list()] in ([S.shutting_down], [])
    assert (await next_exit(driver, spec.instance_id)).reason is ExitReason.poweroff
    assert spec.instance_id not in [s.instance_id for s in await driver.list()]
    text = (spec.state_dir / "console.log").read_text(errors="replace")
    log = [m for m in markers.scan(text) if m.kind != markers.DHCP]
    assert log[-1].kind == markers.POWEROFF
    assert float(log[-1].fields["uptime"]) >= float(after.fields["uptime"])
    return log
