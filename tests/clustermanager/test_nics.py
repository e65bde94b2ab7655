"""``NicService`` over the memory and SQLite stores and scripted node managers
(``fakenodes.FakeNodes``): a NIC added to a running instance is recorded and hot-plugged by its
node, one added to a stopped or pending instance only recorded; the last NIC is removed (from
the VM first, then from the record), another is refused; a node's refusal of an add undoes it;
an instance starting or migrating is refused; users change only their own instances' NICs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    Forbidden,
    InvalidState,
    NotFound,
)
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import Instance
from tashi.domain.operations import DiskRequest, NicRequest, VmRequest
from tashi.domain.states import InstanceState
from tests.api.conftest import make_settings, make_store
from tests.clustermanager.fakenodes import Cluster, cluster

S = InstanceState


@pytest.fixture(params=["memory", "sqlite"])
def c(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    settings_dir = tmp_path / "s"
    settings_dir.mkdir()
    settings = make_settings(settings_dir)
    settings.cluster_manager.state_dir.mkdir(mode=0o700)
    made = cluster(tmp_path, make_store(request.param, settings))

    def second_network(tx: Any) -> None:
        tx.networks.add(NetworkId(2), "second")

    made.run(made.service.db.write(second_network))
    yield made
    made.service.close()


def created(c: Cluster, name: str = "vm") -> Instance:
    request = VmRequest(name=name, disks=[DiskRequest(uri="base.qcow2")])
    inst: Instance = c.run(c.service.instances.create_vm(c.alice, request))
    return inst


def running(c: Cluster, name: str = "vm") -> Instance:
    inst = created(c, name)
    done: Instance = c.run(c.service.instances.activate_vm(c.agent, str(inst.id), "h1"))
    assert done.state is S.Running
    return done


def moved(c: Cluster, iid: InstanceId, to: InstanceState) -> None:
    def change(tx: Any) -> None:
        inst = tx.instances.get(iid)
        tx.instances.transition(iid, inst.state, to, now=c.clock.now())

    c.run(c.service.db.write(change))


def test_a_nic_is_hot_plugged_into_a_running_instance_and_taken_out(c: Cluster) -> None:
    inst = running(c)
    nics = c.service.nics
    added = c.run(nics.attach(c.alice, str(inst.id), NicRequest(network=2)))
    assert [n.network for n in added.nics] == [1, 2]
    new = added.nics[1]
    assert new.mac.startswith("52:54:00:") and new.mac != added.nics[0].mac
    assert c.nodes.nics[inst.id] == [inst.nics[0].mac, new.mac]  # the node has it
    assert c.instance(inst.id).nics == added.nics  # and the record

    with pytest.raises(InvalidState, match="not its last"):
        c.run(nics.detach(c.alice, str(inst.id), 0))
    with pytest.raises(NotFound):
        c.run(nics.detach(c.alice, str(inst.id), 2))
    left = c.run(nics.detach(c.alice, str(inst.id), 1))
    assert left.nics == inst.nics
    assert c.nodes.nics[inst.id] == [inst.nics[0].mac]
    assert c.instance(inst.id).nics == inst.nics


def test_a_stopped_or_pending_instance_has_its_record_changed_only(c: Cluster) -> None:
    pending = created(c, "waits")
    mac = "52:54:00:aa:bb:cc"
    added = c.run(c.service.nics.attach(c.alice, str(pending.id), NicRequest(mac=mac)))
    assert [(n.network, n.mac) for n in added.nics][1] == (1, mac)  # the default network
    assert ("attach_nic", c.hosts[0], pending.id) not in c.nodes.calls
    inst = running(c, "runs")
    moved(c, inst.id, S.Stopped)
    c.run(c.service.nics.attach(c.alice, str(inst.id), NicRequest(network=2)))
    c.run(c.service.nics.detach(c.alice, str(inst.id), 1))
    assert [x for x in c.nodes.calls if x[0].endswith("_nic")] == []
    with pytest.raises(AlreadyExists):  # a MAC in use
        c.run(c.service.nics.attach(c.alice, str(inst.id), NicRequest(mac=mac)))


def test_a_refused_hot_plug_is_undone(c: Cluster) -> None:
    inst = running(c)
    c.nodes.refuse_nic["attach"] = BackendFailure("qemu refused the device")
    with pytest.raises(BackendFailure):
        c.run(c.service.nics.attach(c.alice, str(inst.id), NicRequest(network=2)))
    assert c.instance(inst.id).nics == inst.nics
    c.nodes.refuse_nic["detach"] = InvalidState("the guest keeps it")
    c.run(c.service.nics.attach(c.alice, str(inst.id), NicRequest(network=2)))
    with pytest.raises(InvalidState, match="keeps it"):
        c.run(c.service.nics.detach(c.alice, str(inst.id), 1))
    assert len(c.instance(inst.id).nics) == 2  # the VM kept it: so does the record


@pytest.mark.parametrize("state", [S.MigratePrep, S.Activating, S.Suspended, S.Stopping])
def test_an_instance_on_its_way_is_refused(c: Cluster, state: InstanceState) -> None:
    inst = running(c)
    moved(c, inst.id, state)
    with pytest.raises(InvalidState, match=state.name):
        c.run(c.service.nics.attach(c.alice, str(inst.id), NicRequest()))
    with pytest.raises(InvalidState, match=state.name):
        c.run(c.service.nics.detach(c.alice, str(inst.id), 0))
    assert c.instance(inst.id).nics == inst.nics


def test_bad_input_is_refused_and_changes_nothing(c: Cluster) -> None:
    inst = running(c)

    async def bob() -> Any:
        from tashi.domain.models import Principal, Role

        def add(tx: Any) -> Any:
            user = tx.users.add(
                "bob", role=Role.user, priority=0, password_hash="x", now=c.clock.now()
            )
            return Principal(user.id, "bob", Role.user)

        return await c.service.db.write(add)

    other = asyncio.run(bob())
    with pytest.raises(Forbidden):
        c.run(c.service.nics.attach(other, str(inst.id), NicRequest()))
    with pytest.raises(NotFound, match="network 9"):
        c.run(c.service.nics.attach(c.alice, str(inst.id), NicRequest(network=9)))
    with pytest.raises(NotFound):
        c.run(c.service.nics.attach(c.alice, "12345", NicRequest()))
    assert c.instance(inst.id).nics == inst.nics
