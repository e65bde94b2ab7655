"""A NIC added to or removed from an instance that has one address already (hot-plug,
``clustermanager/instances/nics.py``): the DhcpDns hook's ``nics_changed`` gives a new NIC on a
ranged network its address, lease and name, and takes a removed NIC's away; the scheduler's
round calls it for a running instance whose NICs changed; ``start`` addresses a running
instance's NIC hot-plugged while the scheduler was down.

A real ``tashi-cm`` (SQLite, one fake node manager), the hook with the fake backend. The NICs
are added and removed in the cluster manager's database with the repository calls the NIC
service makes (``add_nic``, ``remove_nic``): the hot-plug into a VM is not what is tested here
(``tests/clustermanager/test_nics.py`` is), and the live cluster's OCCI listener, which would
make them, is not part of this harness.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tashi.api.schemas import DiskIn, InstanceIn, InstanceOut, NetworkIn, NicIn
from tashi.dhcpdns.hook import DhcpDns, create
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import NicConfig
from tashi.scheduler.agent import Agent
from tashi.scheduler.cmclient import CmClient
from tashi.scheduler.hooks import HookContext
from tashi.scheduler.policies import registry
from tashi.scheduler.policies.base import PolicyOptions
from tashi.storage.sql import SqlStore, make_engine
from tests.dhcpdns.test_hook import addresses, host_of
from tests.e2e.harness import Cluster, wait_for
from tests.scheduler.live import cluster

pytestmark = pytest.mark.anyio

OPTIONS = {"ipRange2": "198.19.2.10-198.19.2.250", "backend": "fake", "dnsDomain": "tashi.test"}
RANGE = {f"198.19.2.{i}" for i in range(10, 251)}


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("cm"), nodes=1) as c:
        c.admin.add_network(NetworkIn(id=2, name="second"))
        c.admin.add_network(NetworkIn(id=3, name="unranged"))
        yield c


def fresh_hook(agent: CmClient) -> DhcpDns:
    made = create(HookContext(agent.http, dict(OPTIONS)))
    assert isinstance(made, DhcpDns)
    return made


def new_vm(cm: Cluster, name: str) -> InstanceOut:
    return cm.admin.create_vm(
        InstanceIn(name=name, disks=[DiskIn(uri="disk.img")], nics=[NicIn(network=2)])
    )


def _store(cm: Cluster) -> SqlStore:
    return SqlStore(make_engine(f"sqlite:///{cm.root / 'cm-state' / 'tashi.sqlite'}"))


def plug(cm: Cluster, iid: int, network: int, mac: str) -> None:
    """A NIC added to the instance's record, in whatever state it is (as ``NicService``)."""
    store = _store(cm)
    try:
        with store.transaction() as tx:
            inst = tx.instances.get(InstanceId(iid))
            nic = NicConfig(NetworkId(network), mac, None)
            tx.instances.add_nic(inst.id, inst.state, nic, now=datetime.now(UTC))
    finally:
        store.close()


def unplug(cm: Cluster, iid: int, mac: str) -> None:
    store = _store(cm)
    try:
        with store.transaction() as tx:
            inst = tx.instances.get(InstanceId(iid))
            tx.instances.remove_nic(inst.id, inst.state, mac, now=datetime.now(UTC))
    finally:
        store.close()


async def published(hook: DhcpDns, iid: int) -> list[tuple[int, str, str, str]]:
    return [
        (e.nic_index, e.hostname, e.mac, e.ip)
        for e in await hook.backend.entries()
        if e.instance_id == iid
    ]


async def test_nics_changed_addresses_a_new_nic_and_forgets_a_removed_one(
    cm: Cluster, agent: CmClient
) -> None:
    hook = fresh_hook(agent)
    vm = await hook.before_activation(new_vm(cm, "hot"), host_of(cm))
    ip0 = vm.nics[0].ip
    plug(cm, vm.id, 2, "52:54:00:d0:00:01")
    plug(cm, vm.id, 3, "52:54:00:d0:00:02")  # a network without a range: left alone
    await hook.nics_changed(cm.admin.get_instance(vm.id))
    stored = cm.admin.get_instance(vm.id).nics
    ip1 = stored[1].ip
    assert ip1 in RANGE and ip1 != ip0 and stored[2].ip is None
    expected = [
        (0, "hot", vm.nics[0].mac, ip0),
        (1, "hot-nic1", "52:54:00:d0:00:01", ip1),
    ]
    assert await published(hook, vm.id) == expected
    fqdns = {e.fqdn for e in await hook.backend.entries() if e.instance_id == vm.id}
    assert fqdns == {"hot.tashi.test", "hot-nic1.tashi.test"}
    assert await addresses(agent, vm.id) == [(2, 0, ip0), (2, 1, ip1)]
    # Again (a retried round, or the instance as it was before the address): nothing new.
    await hook.nics_changed(cm.admin.get_instance(vm.id))
    await hook.nics_changed(vm.model_copy(update={"nics": stored}))
    assert await published(hook, vm.id) == expected
    assert await addresses(agent, vm.id) == [(2, 0, ip0), (2, 1, ip1)]
    # The NICs taken out again (the last first): the lease and name of NIC 1 go.
    unplug(cm, vm.id, "52:54:00:d0:00:02")
    unplug(cm, vm.id, "52:54:00:d0:00:01")
    await hook.nics_changed(cm.admin.get_instance(vm.id))
    assert await published(hook, vm.id) == expected[:1]
    assert await addresses(agent, vm.id) == [(2, 0, ip0)]
    cm.admin.destroy_vm(vm.id, force=True)
    await hook.close()


def running(cm: Cluster, iid: int) -> InstanceOut:
    def probe() -> InstanceOut | None:
        inst = cm.admin.get_instance(iid)
        return inst if inst.state == "Running" else None

    return wait_for(f"instance {iid} running", probe, timeout=60, every=0.1)


async def test_a_round_hands_a_running_instances_new_nic_to_the_hook(
    cm: Cluster, agent: CmClient
) -> None:
    hook = fresh_hook(agent)
    scheduler = Agent(agent, registry.create("primitive", PolicyOptions()), [hook])
    vm = new_vm(cm, "live")
    assert (await scheduler.round()).placed >= 1
    ip0 = running(cm, vm.id).nics[0].ip
    assert await published(hook, vm.id) == [(0, "live", vm.nics[0].mac, ip0)]

    plug(cm, vm.id, 2, "52:54:00:d0:01:01")
    await scheduler.round()
    ip1 = cm.admin.get_instance(vm.id).nics[1].ip
    assert ip1 in RANGE and ip1 != ip0
    assert await published(hook, vm.id) == [
        (0, "live", vm.nics[0].mac, ip0),
        (1, "live-nic1", "52:54:00:d0:01:01", ip1),
    ]
    calls = len(hook.backend.calls)  # type: ignore[attr-defined]
    await scheduler.round()  # nothing changed since: the hook is not called
    assert len(hook.backend.calls) == calls  # type: ignore[attr-defined]

    unplug(cm, vm.id, "52:54:00:d0:01:01")
    await scheduler.round()
    assert await published(hook, vm.id) == [(0, "live", vm.nics[0].mac, ip0)]
    assert await addresses(agent, vm.id) == [(2, 0, ip0)]

    # A NIC hot-plugged while the scheduler is down: the next one's start addresses it.
    plug(cm, vm.id, 2, "52:54:00:d0:01:02")
    restarted = fresh_hook(agent)
    await restarted.start(cm.admin.get_instances())
    ip1 = cm.admin.get_instance(vm.id).nics[1].ip
    assert ip1 in RANGE and ip1 != ip0
    assert await published(restarted, vm.id) == [
        (0, "live", vm.nics[0].mac, ip0),
        (1, "live-nic1", "52:54:00:d0:01:02", ip1),
    ]
    cm.admin.destroy_vm(vm.id, force=True)
    await scheduler.close()
    await restarted.close()
