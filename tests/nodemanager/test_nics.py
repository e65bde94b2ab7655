"""NICs hot-plugged on a node: ``NodeService.attach_nic``/``detach_nic`` over the fake VMM and
network drivers, through the node API's own routes (``attachNic``, ``detachNic``).

A NIC joins a running VM after its last one: the network driver makes its tap (the index after
the VM's last), the VMM driver plugs it in, and the VM's recorded instance has it, so a node
manager started again re-adopts the VM with it (its tap kept). Only the last NIC leaves; a
retry of either is no change; a VM busy migrating is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.domain.ids import NetworkId
from tashi.domain.models import DiskConfig, NicConfig
from tashi.network.fake import FakeNetworkDriver
from tashi.nodeapi import convert, paths
from tashi.nodeapi.schemas import AttachNicIn, DetachNicIn
from tashi.vmm.base import VmState
from tashi.vmm.fake import FakeDriver
from tests.nodemanager.test_volumes import I5, Node, instance, store  # noqa: F401  (a fixture)

ROOT = DiskConfig(uri="root.qcow2", persistent=True)
NEW = NicConfig(network=NetworkId(2), mac="52:54:00:00:00:66")


@pytest.fixture
def node(store: object, tmp_path: Path) -> Iterator[Node]:  # noqa: F811
    made = Node(store, tmp_path, FakeDriver())  # type: ignore[arg-type]
    made.service.network = FakeNetworkDriver([1, 2])
    yield made
    made.client.close()


def started(node: Node) -> None:
    wire = convert.instance_wire(instance(ROOT)).model_dump()
    assert node.client.post(paths.VMS, json={"instance": wire}).status_code == 200


def test_a_nic_joins_and_leaves_a_running_vm_through_the_node_api(node: Node) -> None:
    started(node)
    first = instance(ROOT).nics[0]
    answer = node.post("attachNic", AttachNicIn(nic=convert.nic_wire(NEW)))
    assert [n["mac"] for n in answer["nics"]] == [first.mac, NEW.mac]  # type: ignore[union-attr]
    node.post("attachNic", AttachNicIn(nic=convert.nic_wire(NEW)))  # a retry: no change
    recorded = node.dirs.instance(I5)
    assert recorded is not None and recorded.nics == (first, NEW)
    [status] = asyncio.run(node.driver.list())
    assert [(n.mac, n.tap) for n in status.spec.nics] == [
        (first.mac, "tashi5.0"),
        (NEW.mac, "tashi5.1"),
    ]
    assert ("attach", (I5, 1, 2, NEW.mac)) in node.service.network.calls  # type: ignore[attr-defined]

    refused = node.post("detachNic", DetachNicIn(mac=first.mac, timeout=1), status=400)
    assert "not its last" in str(refused)
    node.driver.held_nics.add(NEW.mac)
    node.post("detachNic", DetachNicIn(mac=NEW.mac, timeout=1), status=409)
    node.driver.held_nics.clear()
    answer = node.post("detachNic", DetachNicIn(mac=NEW.mac, timeout=1))
    assert [n["mac"] for n in answer["nics"]] == [first.mac]  # type: ignore[union-attr]
    node.post("detachNic", DetachNicIn(mac=NEW.mac, timeout=1))  # gone: no error
    recorded = node.dirs.instance(I5)
    assert recorded is not None and recorded.nics == (first,)


def test_a_nic_of_a_vm_that_is_not_here_or_busy_is_refused(node: Node) -> None:
    node.post("attachNic", AttachNicIn(nic=convert.nic_wire(NEW)), status=404)
    started(node)
    node.service.running(I5).busy = "migrating"
    node.post("attachNic", AttachNicIn(nic=convert.nic_wire(NEW)), status=409)
    node.post("detachNic", DetachNicIn(mac=NEW.mac, timeout=1), status=409)


def test_a_restarted_node_manager_re_adopts_the_vm_with_its_extra_nic(
    store: object,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        network = FakeNetworkDriver([1, 2])
        first = Node(store, tmp_path, FakeDriver())  # type: ignore[arg-type]
        first.service.network = network
        await first.service.start(instance(ROOT))
        await first.service.attach_nic(I5, NEW)
        await first.driver.close()  # the node manager dies; the VM and its taps stay
        for vm in list(first.service._vms.values()):
            vm.disks.release()

        second = Node(store, tmp_path, FakeDriver())  # type: ignore[arg-type]
        second.service.network = FakeNetworkDriver([1, 2], state=network.state)
        assert await second.service.recover() == [I5]
        [(recorded, _, state)] = second.service.report()
        assert recorded.nics[-1] == NEW and state is VmState.running
        assert sorted(network.state.taps) == ["tashi5.0", "tashi5.1"]  # kept: it runs
        [status] = await second.driver.list()
        assert status.spec.nics[-1].mac == NEW.mac
        await second.service.detach_nic(I5, NEW.mac, 1.0)
        await second.service.destroy(I5)
        assert network.state.taps == {}

    asyncio.run(scenario())
