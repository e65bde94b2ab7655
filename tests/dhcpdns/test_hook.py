"""The DhcpDns hook against a real ``tashi-cm`` (SQLite, one fake node manager), logged in as the
scheduler's agent account, with the fake backend: one address per NIC on ranged networks,
allocated by the cluster manager and published; a retry allocates nothing new; ``after_destroy``
withdraws; ``start`` rebuilds the backend from the cluster's instances; errors are TashiErrors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tashi.api import paths
from tashi.api.schemas import DiskIn, HostOut, InstanceIn, InstanceOut, NetworkIn, NicIn
from tashi.dhcpdns.backends.base import HostEntry
from tashi.dhcpdns.backends.fake import FakeBackend
from tashi.dhcpdns.hook import DhcpDns, create, hostname
from tashi.domain.errors import InsufficientResources, InvalidInput, NotFound
from tashi.domain.ids import InstanceId, NetworkId
from tashi.scheduler.cmclient import CmClient
from tashi.scheduler.hooks import HookContext
from tests.e2e.harness import Cluster
from tests.scheduler.live import cluster

pytestmark = pytest.mark.anyio

RANGES = {"ipRange1": "198.19.1.10-198.19.1.12", "ipRange2": "198.19.2.10-198.19.2.250"}
OPTIONS = {**RANGES, "backend": "fake", "dnsDomain": "tashi.test"}


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("cm"), nodes=1) as c:
        c.admin.add_network(NetworkIn(id=2, name="second"))
        c.admin.add_network(NetworkIn(id=3, name="unranged"))
        yield c


@pytest.fixture
def hook(agent: CmClient) -> DhcpDns:
    made = create(HookContext(agent.http, dict(OPTIONS)))
    assert isinstance(made, DhcpDns) and isinstance(made.backend, FakeBackend)
    return made


def new_vm(cm: Cluster, name: str, networks: list[int], **extra: Any) -> InstanceOut:
    return cm.admin.create_vm(
        InstanceIn(
            name=name,
            disks=[DiskIn(uri="disk.img")],
            nics=[NicIn(network=n) for n in networks],
            **extra,
        )
    )


def host_of(cm: Cluster) -> HostOut:
    return cm.admin.get_hosts()[0]


async def addresses(agent: CmClient, instance_id: int) -> list[tuple[int, int, str]]:
    reply = await agent.http.get(paths.ADDRESSES)
    assert reply.status_code == 200, reply.text
    return sorted(
        (a["network"], a["nicIndex"], a["ip"])
        for a in reply.json()
        if a["instanceId"] == instance_id
    )


async def test_an_address_per_ranged_nic_is_allocated_and_published(
    cm: Cluster, agent: CmClient, hook: DhcpDns
) -> None:
    vm = new_vm(cm, "Web.1", [1, 2, 3, 1], hints={"subDomain": "lab"})
    placed = await hook.before_activation(vm, host_of(cm))
    got = [(n.network, n.ip) for n in placed.nics]
    assert got[2] == (3, None)  # a network without an ipRange is left alone
    ips = [ip for _, ip in got]
    assert ips[1] == "198.19.2.10" and ips[0] is not None and ips[3] is not None
    assert ips[0] != ips[3] and {ips[0], ips[3]} <= {f"198.19.1.{i}" for i in (10, 11, 12)}
    assert [n.ip for n in cm.admin.get_instance(vm.id).nics] == ips  # stored on the NICs
    assert await addresses(agent, vm.id) == sorted(
        (n, i, ip) for i, (n, ip) in enumerate(got) if ip is not None
    )
    names = [(e.nic_index, e.hostname, e.fqdn, e.ip, e.mac) for e in await hook.backend.entries()]
    assert names == [
        (0, "web-1", "web-1.lab.tashi.test", ips[0], vm.nics[0].mac),
        (1, "web-1-nic1", "web-1-nic1.lab.tashi.test", ips[1], vm.nics[1].mac),
        (3, "web-1-nic3", "web-1-nic3.lab.tashi.test", ips[3], vm.nics[3].mac),
    ]
    cm.admin.destroy_vm(vm.id, force=True)


async def test_a_retry_allocates_nothing_new(cm: Cluster, agent: CmClient, hook: DhcpDns) -> None:
    vm = new_vm(cm, "retry", [2])
    first = await hook.before_activation(vm, host_of(cm))
    again = await hook.before_activation(vm, host_of(cm))  # the activation failed: once more
    stale = await hook.before_activation(first, host_of(cm))  # with the instance it returned
    assert first.nics[0].ip == again.nics[0].ip == stale.nics[0].ip is not None
    assert await addresses(agent, vm.id) == [(2, 0, first.nics[0].ip)]
    assert len(await hook.backend.entries()) == 1
    cm.admin.destroy_vm(vm.id, force=True)


async def test_after_destroy_withdraws_and_the_cm_frees_the_address(
    cm: Cluster, agent: CmClient, hook: DhcpDns
) -> None:
    keep = await hook.before_activation(new_vm(cm, "keep", [2]), host_of(cm))
    gone = await hook.before_activation(new_vm(cm, "gone", [2]), host_of(cm))
    gone_ip = gone.nics[0].ip
    cm.admin.destroy_vm(gone.id, force=True)
    await hook.after_destroy(gone)
    await hook.after_destroy(gone)  # twice is fine
    never = gone.model_copy(update={"id": 999999})
    await hook.after_destroy(never)  # an instance it never saw too
    assert [e.instance_id for e in await hook.backend.entries()] == [keep.id]
    assert await addresses(agent, gone.id) == []
    again = await hook.before_activation(new_vm(cm, "next", [2]), host_of(cm))
    assert again.nics[0].ip == gone_ip  # freed in the database: the lowest free one again
    for vm in (keep, again):
        cm.admin.destroy_vm(vm.id, force=True)


async def test_start_rebuilds_the_backend_from_the_cluster(cm: Cluster, agent: CmClient) -> None:
    first = create(HookContext(agent.http, dict(OPTIONS)))
    assert isinstance(first, DhcpDns)
    a = await first.before_activation(new_vm(cm, "alpha", [2]), host_of(cm))
    b = await first.before_activation(new_vm(cm, "beta", [2, 3]), host_of(cm))
    unplaced = new_vm(cm, "gamma", [2])  # no address yet: nothing to publish
    # The scheduler restarts; meanwhile beta was destroyed and the backend holds a stale entry.
    cm.admin.destroy_vm(b.id, force=True)
    second = create(HookContext(agent.http, dict(OPTIONS)))
    assert isinstance(second, DhcpDns)
    stale = HostEntry(InstanceId(b.id), 0, NetworkId(2), b.nics[0].mac, "198.19.2.99", "x", "x")
    await second.backend.publish([stale])
    instances = cm.admin.get_instances()
    await second.start(instances)
    entries = await second.backend.entries()
    assert [(e.instance_id, e.ip, e.hostname) for e in entries] == [(a.id, a.nics[0].ip, "alpha")]
    await second.start(instances)  # idempotent
    assert await second.backend.entries() == entries
    for vm in (a, unplaced):
        cm.admin.destroy_vm(vm.id, force=True)
    await first.close()
    await second.close()


async def test_a_full_range_and_a_gone_instance_are_tashi_errors(
    cm: Cluster, hook: DhcpDns
) -> None:
    made = [await hook.before_activation(new_vm(cm, f"f{i}", [1]), host_of(cm)) for i in range(3)]
    full = new_vm(cm, "full", [1])
    with pytest.raises(InsufficientResources):
        await hook.before_activation(full, host_of(cm))
    assert not [e for e in await hook.backend.entries() if e.instance_id == full.id]
    cm.admin.destroy_vm(full.id, force=True)
    with pytest.raises(NotFound):
        await hook.before_activation(full, host_of(cm))
    for vm in made:
        cm.admin.destroy_vm(vm.id, force=True)


def test_create_checks_its_options(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no ipRange"):
        create(HookContext(None, {"backend": "fake"}))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="reverseDns = False"):
        create(
            HookContext(
                None,  # type: ignore[arg-type]
                {**RANGES, "reverseDns": "False", "dnsmasqDir": str(tmp_path)},
            )
        )
    assert hostname("DB.Server", 0) == "db-server"
    assert hostname("x" * 80, 2) == "x" * 58 + "-nic2"
