"""The hook contract (``tashi.scheduler.hooks``), one suite over every hook: the fake
(``Recorder``) and ``DhcpDns`` (fake backend), each loaded by its registered name as the
scheduler loads it, against a real ``tashi-cm`` logged in as the scheduler's agent account.

What each rule means is in ``hooks.py``: ``before_activation`` returns the instance, is
idempotent, and fails only with ``TashiError``; ``nics_changed`` is idempotent and fails only
with ``TashiError`` too; ``after_destroy`` tolerates an instance it never saw and being called
twice; ``start`` takes every instance of the cluster and may run again; ``close`` ends it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from tashi.api.schemas import DiskIn, HostOut, InstanceIn, InstanceOut, NetworkIn, NicIn
from tashi.domain.errors import TashiError
from tashi.scheduler import hookload
from tashi.scheduler.cmclient import CmClient
from tashi.scheduler.hooks import HookContext, InstanceHook
from tests.e2e.harness import Cluster
from tests.scheduler.live import cluster

pytestmark = pytest.mark.anyio

OPTIONS = {
    "Recorder": {},
    "DhcpDns": {"ipRange2": "198.19.2.10-198.19.2.250", "backend": "fake", "dnsDomain": "t"},
}


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("cm"), nodes=1) as c:
        c.admin.add_network(NetworkIn(id=2, name="second"))
        yield c


@pytest.fixture(params=sorted(OPTIONS))
async def hook(request: pytest.FixtureRequest, agent: CmClient) -> AsyncIterator[InstanceHook]:
    name: str = request.param
    (loaded,) = hookload.load([name], lambda section: HookContext(agent.http, OPTIONS[section]))
    await loaded.start([])
    try:
        yield loaded
    finally:
        await loaded.close()


def new_vm(cm: Cluster, name: str) -> InstanceOut:
    return cm.admin.create_vm(
        InstanceIn(name=name, disks=[DiskIn(uri="disk.img")], nics=[NicIn(network=2)])
    )


def host_of(cm: Cluster) -> HostOut:
    return cm.admin.get_hosts()[0]


async def test_before_activation_returns_the_instance_and_is_idempotent(
    cm: Cluster, hook: InstanceHook
) -> None:
    vm = new_vm(cm, f"idem-{hook.name.lower()}")
    first = await hook.before_activation(vm, host_of(cm))
    again = await hook.before_activation(vm, host_of(cm))
    from_first = await hook.before_activation(first, host_of(cm))
    assert first.id == again.id == from_first.id == vm.id
    assert first.nics == again.nics == from_first.nics
    assert cm.admin.get_instance(vm.id).nics == first.nics  # what it returned is what is stored
    cm.admin.destroy_vm(vm.id, force=True)


async def test_after_destroy_tolerates_twice_and_strangers(cm: Cluster, hook: InstanceHook) -> None:
    vm = await hook.before_activation(new_vm(cm, f"gone-{hook.name.lower()}"), host_of(cm))
    cm.admin.destroy_vm(vm.id, force=True)
    await hook.after_destroy(vm)
    await hook.after_destroy(vm)
    await hook.after_destroy(vm.model_copy(update={"id": 987654}))


async def test_start_takes_the_whole_cluster_and_may_run_again(
    cm: Cluster, hook: InstanceHook
) -> None:
    vm = await hook.before_activation(new_vm(cm, f"start-{hook.name.lower()}"), host_of(cm))
    everything = cm.admin.get_instances()
    await hook.start(everything)
    await hook.start(everything)
    again = await hook.before_activation(cm.admin.get_instance(vm.id), host_of(cm))
    assert again.nics == vm.nics  # nothing handed out twice after a restart
    cm.admin.destroy_vm(vm.id, force=True)
    await hook.after_destroy(vm)


async def test_nics_changed_is_idempotent(cm: Cluster, hook: InstanceHook) -> None:
    vm = await hook.before_activation(new_vm(cm, f"nics-{hook.name.lower()}"), host_of(cm))
    await hook.nics_changed(cm.admin.get_instance(vm.id))
    await hook.nics_changed(vm)  # again, with the instance as it was
    assert cm.admin.get_instance(vm.id).nics == vm.nics  # nothing handed out twice
    cm.admin.destroy_vm(vm.id, force=True)
    await hook.after_destroy(vm)


async def test_failures_are_tashi_errors(cm: Cluster, hook: InstanceHook) -> None:
    vm = new_vm(cm, f"fail-{hook.name.lower()}")
    cm.admin.destroy_vm(vm.id, force=True)
    # The instance is gone: a hook that needs it from the cluster manager says so with a
    # TashiError (anything else escaping fails this test); one that does not may go on.
    with contextlib.suppress(TashiError):
        await hook.before_activation(vm, host_of(cm))
    with contextlib.suppress(TashiError):
        await hook.nics_changed(vm)
