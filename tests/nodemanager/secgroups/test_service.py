"""``FirewallService`` over the fake plumbing: which VMs it guards (those in groups, on taps the
driver made), that it fails a start it cannot guard, that a policy changes every guarded tap in
one transaction and is kept in the state directory for the next node manager, which restores
exactly the VMs it adopted; and the node service calls it around each VM as it calls the
metadata service."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tashi.domain import firewall
from tashi.domain.errors import BackendFailure, InvalidInput
from tashi.domain.firewall import Allow, Policy
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import Instance
from tashi.domain.secgroups import launched_in
from tashi.network.base import Attachment
from tashi.network.fake import FakeHostState
from tashi.nodemanager.secgroups.fake import FakePlumbing
from tashi.nodemanager.secgroups.service import STATE_FILE, FirewallService
from tashi.nodemanager.service import NodeService
from tests.nodemanager.metadata.guests import instance
from tests.nodemanager.test_service import over_fakes

WEB = "sg-0123456789abcdef0"
KEY = firewall.key(7, WEB)  # the made-up guests belong to user 7
SSH = Allow("tcp", 22, 22, ("10.0.0.0/8",))


def grouped(iid: int, *groups: str) -> Instance:
    base = instance(iid)
    return replace(base, hints={**base.hints, **launched_in([(g, "web") for g in groups])})


def taps(inst: Instance) -> list[Attachment]:
    return [
        Attachment(inst.id, i, NetworkId(n.network), n.mac, f"tashi{inst.id}.{i}")
        for i, n in enumerate(inst.nics)
    ]


def started(
    tmp: Path, plumbing: FakePlumbing | None = None
) -> tuple[FirewallService, FakePlumbing]:
    plumbing = plumbing or FakePlumbing()
    service = FirewallService(plumbing, tmp)
    asyncio.run(service.start())
    return service, plumbing


def test_only_vms_in_groups_are_guarded(tmp_path: Path) -> None:
    service, plumbing = started(tmp_path)
    asyncio.run(service.attach(instance(41), taps(instance(41))))
    assert plumbing.scripts == [] and service.ports() == {}
    vm = grouped(42, WEB)
    asyncio.run(service.attach(vm, taps(vm)))
    [(what, script)] = plumbing.scripts
    assert "instance 42" in what
    assert 'device "tashi42.0"' in script and 'device "tashi42.1"' in script
    assert script.count("add chain netdev tashi-secgroups g-7-sg-0123456789abcdef0") == 1
    assert [p.address for p in service.ports()[InstanceId(42)]] == ["198.18.1.42", None]
    asyncio.run(service.detach(InstanceId(42)))
    assert "delete chain netdev tashi-secgroups g-7-sg-0123456789abcdef0" in plumbing.last
    assert service.ports() == {}
    asyncio.run(service.detach(InstanceId(42)))  # again: nothing to do
    assert len(plumbing.scripts) == 2


def test_a_vm_that_cannot_be_guarded_does_not_start(tmp_path: Path) -> None:
    refusing, _ = started(tmp_path, FakePlumbing(failing=True))
    assert not refusing.enforcing
    vm = grouped(42, WEB)
    with pytest.raises(BackendFailure, match="cannot enforce"):
        asyncio.run(refusing.attach(vm, taps(vm)))
    asyncio.run(refusing.attach(instance(41), taps(instance(41))))  # in no group: as ever
    service, _ = started(tmp_path)
    with pytest.raises(BackendFailure, match="ifup script"):
        asyncio.run(service.attach(vm, taps(vm)[:1]))  # NIC 1's tap is QEMU's
    no_taps = FirewallService(None, tmp_path)  # the fake network driver: nothing to guard
    asyncio.run(no_taps.start())
    asyncio.run(no_taps.attach(vm, []))


def test_a_policy_changes_every_guarded_tap_at_once_and_is_kept(tmp_path: Path) -> None:
    service, plumbing = started(tmp_path)
    for iid in (42, 43):
        vm = grouped(iid, WEB)
        asyncio.run(service.attach(vm, taps(vm)))
    policy = Policy({KEY: (SSH,)})
    assert asyncio.run(service.update(policy)) == policy.version == service.version
    assert plumbing.last.splitlines() == [
        "add chain netdev tashi-secgroups g-7-sg-0123456789abcdef0",
        "flush chain netdev tashi-secgroups g-7-sg-0123456789abcdef0",
        "add rule netdev tashi-secgroups g-7-sg-0123456789abcdef0"
        " ip saddr { 10.0.0.0/8 } tcp dport 22 accept",
        "add chain netdev tashi-secgroups e-7-sg-0123456789abcdef0",
        "flush chain netdev tashi-secgroups e-7-sg-0123456789abcdef0",
        "add rule netdev tashi-secgroups e-7-sg-0123456789abcdef0 accept",
    ]
    loads = len(plumbing.scripts)
    assert asyncio.run(service.update(policy)) == policy.version  # the same: nothing done
    assert len(plumbing.scripts) == loads
    kept = json.loads((tmp_path / STATE_FILE).read_text())
    assert kept["version"] == policy.version
    with pytest.raises(InvalidInput):
        asyncio.run(service.update(Policy({KEY: (Allow("gre", -1, -1, ("10.0.0.0/8",)),)})))
    bad = (Allow("gre", -1, -1, ("10.0.0.0/8",)),)
    with pytest.raises(InvalidInput):  # outbound rules are checked alike
        asyncio.run(service.update(Policy({KEY: (SSH,)}, egress={KEY: bad})))
    assert service.version == policy.version
    closed = Policy({KEY: (SSH,)}, egress={KEY: ()})  # lets nothing out: kept, and restored
    asyncio.run(service.update(closed))
    assert "add rule netdev tashi-secgroups e-7-sg-0123456789abcdef0" not in plumbing.last
    assert json.loads((tmp_path / STATE_FILE).read_text())["egress"] == {KEY: []}
    again, _ = started(tmp_path)
    assert again.version == closed.version != policy.version


def test_a_restarted_service_restores_exactly_the_vms_it_adopted(tmp_path: Path) -> None:
    first, _ = started(tmp_path)
    asyncio.run(first.update(Policy({KEY: (SSH,)})))
    second, plumbing = started(tmp_path)
    assert second.version == Policy({KEY: (SSH,)}).version
    vm = grouped(42, WEB)
    asyncio.run(second.restore([(vm, taps(vm)), (instance(41), taps(instance(41)))]))
    [(_, script)] = plumbing.scripts
    assert script.startswith("add table netdev tashi-secgroups\ndelete table netdev")
    assert "ip saddr { 10.0.0.0/8 } tcp dport 22 accept" in script
    assert 'device "tashi42.0"' in script and "tashi41" not in script
    assert list(second.ports()) == [InstanceId(42)]
    (tmp_path / STATE_FILE).write_text("not json")
    third, _ = started(tmp_path)
    assert third.version == Policy().version  # unreadable: closed until the next policy


def test_the_node_service_guards_before_the_guest_runs_and_unguards_after(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        plumbing = FakePlumbing()
        guard = FirewallService(plumbing, tmp_path)
        await guard.start()
        taps = FakeHostState()  # the kernel's: it outlives a node manager

        def node_service() -> NodeService:
            return over_fakes(tmp_path, taps, firewall=guard)

        node = node_service()
        driver = node.driver
        loads_at_start: list[int] = []
        real_start = driver.start

        async def start(spec: Any, incoming: Any = None) -> Any:
            loads_at_start.append(len(plumbing.scripts))
            return await real_start(spec, incoming=incoming)

        driver.start = start  # type: ignore[method-assign]
        await node.start(grouped(42, WEB))
        assert loads_at_start == [1]  # guarded before the VM's process started
        assert InstanceId(42) in guard.ports()
        assert await node.set_firewall(Policy({KEY: (SSH,)})) == node.firewall_version()
        again = node_service()  # a restart: the same host, the VM still runs
        await again.recover()
        assert list(guard.ports()) == [InstanceId(42)]
        assert plumbing.last.startswith("add table netdev tashi-secgroups\ndelete table")
        await again.destroy(InstanceId(42))
        assert guard.ports() == {}

    asyncio.run(scenario())


def test_a_nic_hot_plugged_later_has_its_tap_guarded_beside_the_others(tmp_path: Path) -> None:
    service, plumbing = started(tmp_path)
    vm = grouped(43, WEB)
    first, second = taps(vm)
    asyncio.run(service.attach(vm, [first, second]))
    asyncio.run(service.attach(vm, [first, second]))  # all guarded already: nothing new
    assert len(plumbing.scripts) == 1
    third = Attachment(vm.id, 2, NetworkId(1), "52:54:00:00:2b:02", "tashi43.2")
    asyncio.run(service.attach(vm, [first, second, third]))
    assert 'device "tashi43.2"' in plumbing.last and 'device "tashi43.0"' not in plumbing.last
    assert "g-7-sg-0123456789abcdef0 {" not in plumbing.last  # the group's chain is there
    assert [p.tap for p in service.ports()[vm.id]] == ["tashi43.0", "tashi43.1", "tashi43.2"]
    asyncio.run(service.detach(vm.id))
    assert all(f"delete chain netdev tashi-secgroups to-43-{i}" in plumbing.last for i in range(3))
