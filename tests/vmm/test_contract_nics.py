"""The VMM driver contract for NICs (``attach_nic``, ``detach_nic``), over every driver: the
fake and QEMU.

QEMU runs the tiny guest with its taps in a private network namespace (``PrivateNetwork``, as
the DHCP test of ``test_qemu.py``); the guest is seen to take a hot-plugged NIC by the
``nics`` call, which reads whether its virtio driver set the device ``DRIVER_OK``, and to let
it go by the unplug completing (QEMU removes the device only once the guest has ejected it).
A VM adopted by a new driver keeps its NIC; a VM with a hot-plugged NIC migrates to a target
started with all its NICs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from tashi.domain.errors import AlreadyExists, InvalidInput, InvalidState, NotFound
from tashi.domain.ids import InstanceId
from tashi.images import markers
from tashi.runtime.ports import free_port
from tashi.vmm.base import ExitReason, MigrationTicket, NicSpec, VmmCall, VmmDriver
from tashi.vmm.base import VmState as S
from tests.images.guests import PrivateNetwork, require_programs
from tests.vmm.lab import BOOT_TIMEOUT, Lab, next_exit, next_id, wait_marker

pytestmark = pytest.mark.anyio

TIMEOUT = 30.0
MACS = ("52:54:00:5e:00:01", "52:54:00:5e:00:02")

Taps = Callable[[str], NicSpec]


@contextlib.contextmanager
def taps(lab: Lab) -> Iterator[Taps]:
    """Makes a NIC (its tap) for a MAC: QEMU's on a bridge in a namespace of its own."""
    if lab.kind == "fake":
        count = itertools.count()
        yield lambda mac: NicSpec(mac, 1, f"ftap{next(count)}")
        return
    require_programs("ip")
    with PrivateNetwork.create() as net:
        lab.netns = net.netns
        yield lambda mac: NicSpec(mac, 1, net.nic(mac).tap)


async def guest_took(driver: VmmDriver, iid: InstanceId, nic: int, mac: str) -> None:
    """Poll ``nics`` until the guest's driver has NIC ``nic`` (``mac``)."""
    wanted = f"nic{nic} mac={mac} "
    deadline = asyncio.get_running_loop().time() + BOOT_TIMEOUT
    while True:
        lines = (await driver.call(iid, VmmCall("nics"))).splitlines()
        if any(line.startswith(wanted) and line.endswith("guest=ready") for line in lines):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the guest did not take {mac}: {lines}")
        await asyncio.sleep(0.1)


async def nics_of(driver: VmmDriver) -> list[NicSpec]:
    [status] = await driver.list()
    return list(status.spec.nics)


async def test_a_nic_comes_and_goes_and_the_guest_takes_it(lab: Lab) -> None:
    with taps(lab) as make:
        driver = lab.driver()
        first = make(MACS[0])
        spec = lab.spec(next_id(), nics=(first,))
        iid = spec.instance_id
        await driver.start(spec)
        await wait_marker(driver, iid, markers.UP)
        await guest_took(driver, iid, 0, MACS[0])
        added = make(MACS[1])

        await driver.attach_nic(iid, added)
        await guest_took(driver, iid, 1, MACS[1])
        assert await nics_of(driver) == [first, added]
        with pytest.raises(AlreadyExists):
            await driver.attach_nic(iid, added)
        with pytest.raises(InvalidInput):  # not the last
            await driver.detach_nic(iid, MACS[0], TIMEOUT)

        adopter = lab.driver()  # a restarted node manager finds the VM with its NIC
        [adopted] = await adopter.adopt([spec.state_dir])
        assert list(adopted.spec.nics) == [first, added]
        await adopter.close()

        await driver.detach_nic(iid, MACS[1], TIMEOUT)  # returns once the guest let go
        assert await nics_of(driver) == [first]
        assert (await driver.call(iid, VmmCall("nics"))).count("\n") == 0
        await driver.detach_nic(iid, MACS[1], TIMEOUT)  # gone already: no error
        await driver.attach_nic(iid, added)  # and back again, where it was
        await guest_took(driver, iid, 1, MACS[1])
        await driver.destroy(iid)
        assert (await next_exit(driver, iid)).reason is ExitReason.destroyed
        await driver.close()


async def test_only_running_or_paused_vms_take_nics(lab: Lab) -> None:
    with taps(lab) as make:
        driver = lab.driver()
        spec = lab.spec(next_id(), disks=0)
        nic = make(MACS[0])
        with pytest.raises(NotFound):
            await driver.attach_nic(spec.instance_id, nic)
        await driver.start(spec, incoming=MigrationTicket("127.0.0.1", free_port()))
        with pytest.raises(InvalidState):
            await driver.attach_nic(spec.instance_id, nic)
        with pytest.raises(InvalidState):
            await driver.detach_nic(spec.instance_id, MACS[0], TIMEOUT)
        await driver.destroy(spec.instance_id)
        await driver.close()


async def test_a_vm_migrates_with_its_hot_plugged_nic(lab: Lab) -> None:
    with taps(lab) as make:
        source, target = lab.driver(), lab.driver()
        first = make(MACS[0])
        spec = lab.spec(next_id(), where="source", shared=(True,), nics=(first,))
        iid = spec.instance_id
        await source.start(spec)
        await wait_marker(source, iid, markers.UP)
        added = make(MACS[1])
        await source.attach_nic(iid, added)
        await guest_took(source, iid, 1, MACS[1])

        # the target host's own taps (here: others in the same namespace), the same NICs
        there = [make(MACS[0]), make(MACS[1])]
        ticket = MigrationTicket("127.0.0.1", free_port())
        arriving = replace(lab.spec(iid, where="target"), disks=spec.disks, nics=there)
        await target.start(arriving, incoming=ticket)
        await source.migrate(iid, ticket)
        assert (await next_exit(source, iid)).reason is ExitReason.migrated
        landed = await target.finish_incoming(iid)
        assert landed.state is S.running
        assert list(landed.spec.nics) == there
        await guest_took(target, iid, 1, MACS[1])  # the guest, moved, still has it
        await target.detach_nic(iid, MACS[1], TIMEOUT)  # and lets it go
        assert await nics_of(target) == there[:1]
        await target.destroy(iid)
        await source.close()
        await target.close()
