"""HA restart (ADR 0010) on the fake clock: a lost host's Orphaned instances go back to Pending
only once its lease plus the margin is over and every witness confirms its silence, with a
history line; a host that comes back in time keeps them; what was being destroyed is removed;
heartbeats grant the lease and hand out the witnesses; fenced VMs reported go back to Pending."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tashi.clustermanager.instances.migration import TARGET_HINT
from tashi.domain.clock import FakeClock
from tashi.domain.errors import NotFound
from tashi.domain.ids import HostId, UserId
from tashi.domain.models import Instance, Role
from tashi.domain.operations import DiskRequest, VmRequest
from tashi.domain.states import InstanceState
from tashi.domain.witnesses import WitnessSets
from tashi.nodeapi import peering
from tashi.storage.contract import InstanceChanges, Transaction
from tashi.storage.memory import MemoryStore
from tests.api.conftest import Api, start_api
from tests.api.test_instances import create, force_state
from tests.api.test_nodes import register, report
from tests.clustermanager.fakenodes import Cluster, cluster

S = InstanceState
LEASE, MARGIN, EXPIRE = 10.0, 3.0, 6.0


def witnessed(c: Cluster, sets: WitnessSets | None = None) -> None:
    """Every host gets a node link with a peer secret; h1 the witness sets ``sets`` (by
    default h2 alone, acknowledged)."""

    def node_user(tx: Transaction) -> UserId:
        try:
            return tx.users.get_by_name("nodes").id
        except NotFound:
            return tx.users.add(
                "nodes", role=Role.node, priority=0, password_hash="h", now=c.clock.now()
            ).id

    node = c.run(c.service.db.write(node_user))
    chosen = sets if sets is not None else WitnessSets().with_current([c.hosts[1]]).acknowledge(1)

    def run(tx: Transaction) -> None:
        for i, host_id in enumerate(c.hosts):
            tx.hosts.set_link(
                host_id,
                endpoint=f"http://127.0.0.1:{i + 1}",
                secret="s" * 32,
                user_id=node,
                now=c.clock.now(),
                peer_secret=f"peer{i}" * 8,
            )
        tx.hosts.set_witnesses(c.hosts[0], chosen)

    c.run(c.service.db.write(run))


def ha_cluster(tmp: Path, hosts: int = 2) -> tuple[Cluster, Instance]:
    c = cluster(
        tmp,
        MemoryStore(),
        hosts=hosts,
        expire_host_time=EXPIRE,
        host_lease_time=LEASE,
        restart_margin=MARGIN,
    )
    lease = c.clock.now() + timedelta(seconds=LEASE)
    c.run(c.service.db.write(lambda tx: tx.hosts.update(c.hosts[0], lease_expires=lease)))
    witnessed(c)
    request = VmRequest(name="web", disks=[DiskRequest("base.qcow2")])
    inst = c.run(c.service.instances.create_vm(c.alice, request))
    c.run(c.service.instances.activate_vm(c.agent, "web", "h1"))
    return c, inst


def lose_host(c: Cluster) -> None:
    """h1's node manager stops answering; liveness marks it down after expireHostTime."""
    c.nodes.dead.add(c.hosts[0])
    c.clock.advance(EXPIRE + 0.5)
    assert [h.name for h in c.run(c.service.liveness.check())] == ["h1"]


def test_orphans_are_rescheduled_only_after_the_lease_and_margin(tmp_path: Path) -> None:
    c, inst = ha_cluster(tmp_path)
    lose_host(c)
    assert c.instance(inst.id).state is S.Orphaned
    assert c.run(c.service.ha.check()) == []
    c.clock.advance(LEASE + MARGIN - EXPIRE - 0.5 - 0.01)  # just before lease + margin
    assert c.run(c.service.ha.check()) == [] and c.instance(inst.id).state is S.Orphaned
    c.clock.advance(0.01)
    moved = c.run(c.service.ha.check())
    assert [i.id for i in moved] == [inst.id]
    now = c.instance(inst.id)
    assert (now.state, now.host_id, now.vm_id) == (S.Pending, None, None)
    assert "h1 was lost and its lease ran out" in (now.reason or "")
    kinds = [k for k, _ in c.history(inst.id)]
    assert kinds[-2:] == ["hostLost", "rescheduled"]
    # the scheduler places it like any Pending instance
    assert c.run(c.service.instances.activate_vm(c.agent, "web", "h2")).state is S.Running
    assert c.run(c.service.ha.check()) == []


def test_a_host_that_renews_its_lease_in_time_keeps_its_instances(tmp_path: Path) -> None:
    c, inst = ha_cluster(tmp_path)
    lose_host(c)
    later = c.clock.now() + timedelta(seconds=LEASE)
    c.run(c.service.db.write(lambda tx: tx.hosts.update(c.hosts[0], lease_expires=later)))
    c.clock.advance(LEASE)
    assert c.run(c.service.ha.check()) == [] and c.instance(inst.id).state is S.Orphaned
    c.run(c.service.db.write(lambda tx: tx.hosts.update(c.hosts[0], up=True)))
    c.clock.advance(3600)
    assert c.run(c.service.ha.check()) == [] and c.instance(inst.id).state is S.Orphaned


def test_lost_while_destroying_is_removed_and_while_migrating_is_left(tmp_path: Path) -> None:
    c, inst = ha_cluster(tmp_path)
    other = c.run(
        c.service.instances.create_vm(
            c.alice, VmRequest(name="mig", disks=[DiskRequest("base.qcow2")])
        )
    )
    c.run(c.service.instances.activate_vm(c.agent, "mig", "h1"))
    now = c.clock.now()
    c.run(
        c.service.db.write(
            lambda tx: (
                tx.instances.transition(inst.id, S.Running, S.Destroying, now=now),
                tx.instances.transition(
                    other.id,
                    S.Running,
                    S.MigratePrep,
                    now=now,
                    changes=InstanceChanges(host_id=HostId(c.hosts[0])),
                ),
            )
        )
    )
    lose_host(c)
    c.clock.advance(LEASE + MARGIN)
    assert c.run(c.service.ha.check()) == []
    assert c.run(c.service.db.read(lambda tx: tx.instances.count())) == 1
    assert c.instance(other.id).state is S.MigratePrep  # its migration's settling decides
    assert c.history(inst.id)[-1] == ("removed", "lost with h1 while Destroying")


def test_without_a_lease_nothing_is_restarted(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=2, host_lease_time=0.0)
    request = VmRequest(name="web", disks=[DiskRequest("base.qcow2")])
    inst = c.run(c.service.instances.create_vm(c.alice, request))
    c.run(c.service.instances.activate_vm(c.agent, "web", "h1"))
    c.nodes.dead.add(c.hosts[0])
    c.clock.advance(3600)
    c.run(c.service.liveness.check())
    assert c.run(c.service.ha.check()) == [] and c.instance(inst.id).state is S.Orphaned


@pytest.fixture
def leased(tmp_path: Path) -> Iterator[tuple[Api, FakeClock]]:
    clock = FakeClock()
    yield from (
        (api, clock) for api in start_api("sqlite", tmp_path, clock=clock, host_lease_time=LEASE)
    )


def test_registration_and_heartbeats_grant_the_lease(leased: tuple[Api, FakeClock]) -> None:
    api, clock = leased
    node = api.user("node1", role="node")
    reply = register(api, node)
    assert reply.json()["leaseTime"] == LEASE
    host = api.call("GET", "/v1/hosts/n1", api.admin).json()
    clock.advance(2)
    beat = api.call(
        "POST", f"/v1/nodes/{host['id']}/heartbeat", node, json={"vms": [], "memory": 4096}
    )
    assert beat.status_code == 200, beat.text
    assert beat.json()["leaseTime"] == LEASE
    stored = api.http.portal.call(  # type: ignore[union-attr]
        api.service.db.read, lambda tx: tx.hosts.get(HostId(host["id"]))
    )
    assert stored.lease_expires == clock.now() + timedelta(seconds=LEASE)


def test_vms_a_host_reports_fenced_go_back_to_pending(
    leased: tuple[Api, FakeClock],
) -> None:
    """Its node manager stopped its VMs itself (self-fence) and says so: those instances go back
    to Pending instead of being taken for VMs that ended on their own."""
    api, clock = leased
    node = api.user("node1", role="node")
    register(api, node)
    host = api.call("GET", "/v1/hosts/n1", api.admin).json()
    alice = api.user("alice")
    vm = create(api, alice, "web").json()
    kept = create(api, alice, "kept").json()
    force_state(api, vm["id"], S.Running, host=host["id"])
    force_state(api, kept["id"], S.Running, host=host["id"])
    clock.advance(LEASE + 1)  # e.g. the cluster manager was away longer than the lease
    beat = api.call(
        "POST",
        f"/v1/nodes/{host['id']}/heartbeat",
        node,
        json={"vms": [report(kept["id"], "running")], "fenced": [vm["id"]]},
    )
    assert beat.status_code == 200, beat.text
    web = api.call("GET", "/v1/instances/web", api.admin).json()
    assert (web["state"], web["hostId"]) == ("Pending", None)
    assert "stopped it when its lease ran out" in web["reason"]
    events = api.call("GET", "/v1/instances/web/history", api.admin).json()
    assert events[-1]["kind"] == "rescheduled" and "self-fence" in events[-1]["message"]
    assert api.call("GET", "/v1/instances/kept", api.admin).json()["state"] == "Running"


def test_a_host_that_crashed_and_registers_in_time_without_its_vms_restarts_them(
    leased: tuple[Api, FakeClock],
) -> None:
    """The host rebooted within its lease: its new node manager registers with no VMs. The
    Orphaned instances died with it and go back to Pending; one that was being destroyed is
    removed as asked; one it still runs is re-attached."""
    api, clock = leased
    node = api.user("node1", role="node")
    register(api, node)
    host = api.call("GET", "/v1/hosts/n1", api.admin).json()
    alice = api.user("alice")
    ids = {name: create(api, alice, name).json()["id"] for name in ("web", "gone", "kept")}
    for name in ("web", "kept"):
        force_state(api, ids[name], S.Running, host=host["id"])
    force_state(api, ids["gone"], S.Activating, host=host["id"])
    force_state(api, ids["gone"], S.Running)
    force_state(api, ids["gone"], S.Destroying)
    clock.advance(EXPIRE + 1)
    api.http.portal.call(api.service.liveness.check)  # type: ignore[union-attr]
    assert api.call("GET", "/v1/instances/web", api.admin).json()["state"] == "Orphaned"
    clock.advance(1)  # back well before lease + margin
    again = register(api, node, vms=[report(ids["kept"], "running")])
    assert again.status_code == 200, again.text
    web = api.call("GET", "/v1/instances/web", api.admin).json()
    assert (web["state"], web["hostId"]) == ("Pending", None)
    assert "came back without it" in web["reason"]
    assert api.call("GET", "/v1/instances/gone", api.admin).status_code == 404
    clock.advance(api.settings.cluster_manager_service.reconcile_grace + 1)
    beat = api.call(
        "POST",
        f"/v1/nodes/{host['id']}/heartbeat",
        node,
        json={"vms": [report(ids["kept"], "running")]},
    )
    assert beat.status_code == 200, beat.text
    kept = api.call("GET", "/v1/instances/kept", api.admin).json()
    assert (kept["state"], kept["hostId"]) == ("Running", host["id"])


def test_a_lost_part_of_a_group_is_placed_again_without_its_running_mates(
    tmp_path: Path,
) -> None:
    """HA puts only the lost members back to Pending; the scheduler places those together
    (activateGroup, as it places any queued members of a group) while their mates run on."""
    c = cluster(
        tmp_path,
        MemoryStore(),
        hosts=2,
        cores=4,
        expire_host_time=EXPIRE,
        host_lease_time=LEASE,
        restart_margin=MARGIN,
    )
    lease = c.clock.now() + timedelta(seconds=LEASE)
    c.run(c.service.db.write(lambda tx: tx.hosts.update(c.hosts[0], lease_expires=lease)))
    witnessed(c)
    request = VmRequest(name="w", disks=[DiskRequest("base.qcow2")])
    group = c.run(c.service.instances.create_many(c.alice, request, 3))
    pairs = [("w-0", "h1"), ("w-1", "h2"), ("w-2", "h1")]
    c.run(c.service.groups.activate_group(c.agent, pairs))
    lose_host(c)
    c.clock.advance(LEASE + MARGIN)
    moved = {i.name for i in c.run(c.service.ha.check())}
    assert moved == {"w-0", "w-2"}
    assert c.instance(group[1].id).state is S.Running
    placed = c.run(c.service.groups.activate_group(c.agent, [("w-0", "h2"), ("w-2", "h2")]))
    assert [(i.name, i.state, i.host_id) for i in placed] == [
        ("w-0", S.Running, c.hosts[1]),
        ("w-2", S.Running, c.hosts[1]),
    ]
    assert c.instance(group[1].id).state is S.Running


def test_no_restart_while_a_witness_granted_the_host_recently(tmp_path: Path) -> None:
    """The cluster manager lost h1, but h2 still hears from it: h1 keeps its lease and its
    VMs, so they must not start elsewhere; once h2 has not heard from it either, they do."""
    c, inst = ha_cluster(tmp_path)
    lose_host(c)
    c.nodes.grant_age[(c.hosts[1], c.hosts[0])] = 1.0
    c.clock.advance(LEASE + MARGIN)
    assert c.run(c.service.ha.check()) == [] and c.instance(inst.id).state is S.Orphaned
    c.nodes.grant_age[(c.hosts[1], c.hosts[0])] = LEASE + MARGIN - 0.1
    assert c.run(c.service.ha.check()) == []
    c.nodes.grant_age[(c.hosts[1], c.hosts[0])] = LEASE + MARGIN
    assert [i.id for i in c.run(c.service.ha.check())] == [inst.id]


def test_no_restart_while_a_witness_cannot_be_asked_or_has_just_started(
    tmp_path: Path,
) -> None:
    c, inst = ha_cluster(tmp_path)
    lose_host(c)
    c.clock.advance(LEASE + MARGIN)
    c.nodes.dead.add(c.hosts[1])  # h1 and h2 may be on one side of a partition together
    assert c.run(c.service.ha.check()) == [] and c.instance(inst.id).state is S.Orphaned
    c.nodes.dead.discard(c.hosts[1])
    c.nodes.uptime = LEASE  # restarted: it cannot know what it granted before
    assert c.run(c.service.ha.check()) == []
    c.nodes.uptime = LEASE + MARGIN
    assert [i.id for i in c.run(c.service.ha.check())] == [inst.id]


def test_a_host_alone_with_no_witness_is_never_restarted(tmp_path: Path) -> None:
    """A host that was alone runs without a lease that can run out: nothing proves that it
    stopped its VMs."""
    c, inst = ha_cluster(tmp_path)
    witnessed(c, WitnessSets().with_current([]).acknowledge(1))
    lose_host(c)
    c.clock.advance(3600)
    assert c.run(c.service.ha.check()) == [] and c.instance(inst.id).state is S.Orphaned


def test_every_set_the_host_may_use_must_confirm(tmp_path: Path) -> None:
    """h1 was sent a new set (h3) but has not acknowledged it: it may still hold h2's grant."""
    c, inst = ha_cluster(tmp_path, hosts=3)
    h2, h3 = c.hosts[1], c.hosts[2]
    witnessed(c, WitnessSets().with_current([h2]).acknowledge(1).with_current([h3]))
    lose_host(c)
    c.clock.advance(LEASE + MARGIN)
    c.nodes.grant_age[(h2, c.hosts[0])] = 1.0
    assert c.run(c.service.ha.check()) == []
    c.nodes.grant_age[(h2, c.hosts[0])] = 60.0
    c.nodes.grant_age[(h3, c.hosts[0])] = 1.0
    assert c.run(c.service.ha.check()) == []
    c.nodes.grant_age[(h3, c.hosts[0])] = 60.0
    assert [i.id for i in c.run(c.service.ha.check())] == [inst.id]


def test_heartbeats_hand_out_witnesses_with_tokens_and_take_acknowledgements(
    leased: tuple[Api, FakeClock],
) -> None:
    api, _ = leased
    nodes = [api.user(f"node{i}", role="node") for i in (1, 2, 3)]
    secrets = [f"peer-secret-{i}".ljust(32, "x") for i in (1, 2, 3)]
    for i, node in enumerate(nodes):
        reply = register(api, node, name=f"n{i + 1}", peerSecret=secrets[i])
        assert reply.status_code == 200, reply.text
    ids = [api.call("GET", f"/v1/hosts/n{i}", api.admin).json()["id"] for i in (1, 2, 3)]
    beat = api.call("POST", f"/v1/nodes/{ids[0]}/heartbeat", nodes[0], json={"vms": []})
    witnesses = beat.json()["witnesses"]
    assert [w["hostId"] for w in witnesses["hosts"]] == [ids[1], ids[2]]
    assert witnesses["hosts"][0]["token"] == peering.token(secrets[1], ids[0])
    assert peering.valid(secrets[2], ids[0], witnesses["hosts"][1]["token"])
    assert not peering.valid(secrets[2], ids[1], witnesses["hosts"][1]["token"])

    def sets() -> WitnessSets:
        link = api.http.portal.call(  # type: ignore[union-attr]
            api.service.db.read, lambda tx: tx.hosts.link(HostId(ids[0]))
        )
        return link.witnesses

    assert not sets().settled()
    epoch = witnesses["epoch"]
    body = {"vms": [], "witnessEpoch": epoch}
    again = api.call("POST", f"/v1/nodes/{ids[0]}/heartbeat", nodes[0], json=body)
    assert again.json()["witnesses"]["epoch"] == epoch
    assert sets().settled() and sets().voters() == {ids[1], ids[2]}


def migrating(c: Cluster, inst: Instance, state: InstanceState = S.MigrateTrans) -> None:
    """``inst`` (Running on h1) on its way to h2, as ``migrateVm`` leaves it."""
    now = c.clock.now()

    def run(tx: Transaction) -> None:
        changes = InstanceChanges(hints={TARGET_HINT: str(c.hosts[1])})
        tx.instances.transition(inst.id, S.Running, S.MigratePrep, now=now, changes=changes)
        if state is S.MigrateTrans:
            tx.instances.transition(inst.id, S.MigratePrep, S.MigrateTrans, now=now)

    c.run(c.service.db.write(run))


def test_a_host_lost_mid_migration_hands_the_vm_its_target_holds_over(tmp_path: Path) -> None:
    """The source sent the VM and died: the target's copy is the VM. It is not orphaned (and so
    not fenced on the target), and once the source is proven lost it runs on the target."""
    c, inst = ha_cluster(tmp_path)
    migrating(c, inst)
    c.nodes.on(c.hosts[1])[inst.id] = 4242  # the target's copy
    lose_host(c)
    assert c.instance(inst.id).state is S.MigrateTrans
    c.run(c.service.deadlines.check())  # the source cannot be asked, and is not yet lost
    assert c.instance(inst.id).state is S.MigrateTrans
    c.clock.advance(LEASE + MARGIN - EXPIRE)
    c.run(c.service.deadlines.check())
    now = c.instance(inst.id)
    assert (now.state, now.host_id, now.vm_id) == (S.Running, c.hosts[1], 4242)
    assert TARGET_HINT not in now.hints
    assert c.history(inst.id)[-1] == ("migrated", "from h1 to h2; h1 was lost")
    assert c.run(c.service.ha.check()) == []


@pytest.mark.parametrize("state", [S.MigratePrep, S.MigrateTrans])
def test_a_host_lost_mid_migration_with_no_copy_on_the_target_restarts_it(
    tmp_path: Path, state: InstanceState
) -> None:
    c, inst = ha_cluster(tmp_path)
    migrating(c, inst, state)
    if state is S.MigratePrep:  # prepared, never sent: that copy is nothing
        c.nodes.on(c.hosts[1])[inst.id] = 4242
    lose_host(c)
    c.clock.advance(LEASE + MARGIN - EXPIRE)
    c.run(c.service.deadlines.check())
    now = c.instance(inst.id)
    assert (now.state, now.host_id, now.vm_id) == (S.Pending, None, None)
    assert TARGET_HINT not in now.hints
    assert c.nodes.on(c.hosts[1]) == {}
    assert [k for k, _ in c.history(inst.id)][-1] == "rescheduled"


def test_a_migration_whose_vm_is_on_neither_host_starts_it_again(tmp_path: Path) -> None:
    """Both hosts answer and neither has the VM (the source's copy was fenced before it was
    sent): nothing can run twice, and the instance starts again rather than being dropped."""
    c, inst = ha_cluster(tmp_path)
    migrating(c, inst)
    c.nodes.on(c.hosts[0]).pop(inst.id)
    c.run(c.service.deadlines.check())
    now = c.instance(inst.id)
    assert (now.state, now.host_id) == (S.Pending, None)
