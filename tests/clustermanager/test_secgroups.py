"""Security groups in the cluster manager (``clustermanager/secgroups``): the service's rules
(default group, names, duplicates, deletes refused while used), and what each host is sent
(``FirewallSync``): the policy of the groups its VMs are in, sent beside a fresh VM's start
(its host first) and before a VM lands on a host otherwise (a migration's target), again after
any change of rules or members, resolved from group references to the members' addresses, and
never another user's rules for a group a ``securityGroups`` hint names. Over the scripted node
managers of ``fakenodes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tashi.clustermanager.secgroups import sync
from tashi.domain import firewall
from tashi.domain.errors import NotFound
from tashi.domain.firewall import Allow, Policy
from tashi.domain.ids import HostId, UserId
from tashi.domain.models import Instance, Principal, Role
from tashi.domain.operations import DiskRequest, NicRequest, VmRequest
from tashi.domain.secgroups import (
    DEFAULT_EGRESS,
    MAX_RULES,
    CannotDelete,
    DuplicateGroup,
    DuplicateRule,
    GroupInUse,
    Rule,
    RulesLimitExceeded,
    SecurityGroup,
    UnknownGroup,
    UnknownRule,
    launched_in,
)
from tashi.storage.contract import InstanceFilter, Transaction
from tashi.storage.memory import MemoryStore
from tests.clustermanager.fakenodes import Cluster, cluster

SSH = Rule("tcp", 22, 22, cidr="10.0.0.0/8")


def _run(c: Cluster, body: Callable[[Cluster], Awaitable[Any]]) -> Any:
    return asyncio.run(body(c))


@pytest.fixture
def c(tmp_path: Path) -> Cluster:
    return cluster(tmp_path, MemoryStore())


async def _vm(
    c: Cluster, name: str, ip: str, own: dict[str, str], who: Principal, **hints: str
) -> Instance:
    request = VmRequest(
        name=name,
        disks=[DiskRequest(uri="base.qcow2")],
        nics=[NicRequest(network=1, ip=ip)],
        hints=hints,
        own_hints=own,
    )
    return await c.service.instances.create_vm(who, request)


async def _start(c: Cluster, inst: Instance, host: str) -> Instance:
    return await c.service.instances.activate_vm(c.agent, str(inst.id), host)


async def _web_and_db(c: Cluster) -> tuple[SecurityGroup, SecurityGroup]:
    """Alice's groups ``web`` and ``db``, which lets ``web``'s members in on port 5432."""
    groups = c.service.security_groups
    web = (await groups.create(c.alice, "web", "web")).group
    db = (await groups.create(c.alice, "db", "db")).group
    await groups.authorize(c.alice, db.id, [Rule("tcp", 5432, 5432, peer=web.id)])
    return web, db


def _key(who: Principal, group: str) -> str:
    return firewall.key(who.user_id, group)


def test_default_names_duplicates_and_deletes(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        groups = c.service.security_groups
        default = await groups.default(c.alice)
        assert (await groups.default(c.alice)).id == default.id
        [listed] = await groups.describe(c.alice)
        assert listed.rules == (Rule("-1", -1, -1, peer=default.id), DEFAULT_EGRESS)
        web = (await groups.create(c.alice, "web", "web servers", {"team": "web"})).group
        with pytest.raises(DuplicateGroup):
            await groups.create(c.alice, "web", "again")
        assert (await groups.find(c.alice, "web")).id == web.id
        with pytest.raises(UnknownGroup):
            await groups.find(c.admin, web.id)  # an admin's groups are their own too
        await groups.authorize(c.alice, "web", [SSH])
        with pytest.raises(DuplicateRule):
            await groups.authorize(c.alice, web.id, [Rule("udp", 1, 2, cidr="1.0.0.0/8"), SSH])
        with pytest.raises(UnknownRule):
            await groups.revoke(c.alice, web.id, [SSH, Rule("udp", 1, 2, cidr="1.0.0.0/8")])
        await groups.revoke(c.alice, web.id, [SSH])
        with pytest.raises(CannotDelete):
            await groups.delete(c.alice, "default")
        vm = await _vm(c, "vm", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        with pytest.raises(GroupInUse):
            await groups.delete(c.alice, "web")
        await c.service.instances.destroy_vm(c.alice, str(vm.id))
        assert (await groups.delete(c.alice, "web")).id == web.id
        assert [g.group.name for g in await groups.describe(c.alice)] == ["default"]

    _run(c, body)


def test_outbound_rules_reach_the_hosts_once_a_group_restricts_them(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        groups = c.service.security_groups
        made = await groups.create(c.alice, "web", "web")
        web, db = made.group, (await groups.create(c.alice, "db", "db")).group
        assert made.rules == (DEFAULT_EGRESS,)
        front = await _vm(c, "front", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        store = await _vm(c, "store", "198.18.1.20", launched_in([(db.id, "db")]), c.alice)
        await _start(c, front, "h1")
        await _start(c, store, "h1")
        await c.service.firewalls.settle()
        assert c.nodes.firewalls[c.hosts[0]].egress == {}  # AWS's default: all out
        to_db = Rule("tcp", 5432, 5432, peer=db.id, egress=True)
        await groups.authorize(c.alice, web.id, [to_db])
        with pytest.raises(DuplicateRule):
            await groups.authorize(c.alice, web.id, [DEFAULT_EGRESS])
        await groups.revoke(c.alice, web.id, [DEFAULT_EGRESS])
        await c.service.firewalls.settle()
        sent = c.nodes.firewalls[c.hosts[0]]
        to_store = Allow("tcp", 5432, 5432, ("198.18.1.20/32",))
        assert sent.egress == {_key(c.alice, web.id): (to_store,)}
        assert _key(c.alice, db.id) not in sent.egress  # db still lets everything out
        assert sent.groups[_key(c.alice, web.id)] == ()  # inbound untouched
        inbound = [Rule("tcp", p, p, cidr="10.0.0.0/8") for p in range(1, MAX_RULES + 1)]
        await groups.authorize(c.alice, web.id, inbound)  # 60 in and 1 out: within both
        with pytest.raises(RulesLimitExceeded, match="inbound"):
            await groups.authorize(c.alice, web.id, [Rule("udp", 1, 1, cidr="10.0.0.0/8")])
        await c.service.instances.destroy_vm(c.alice, str(store.id))
        with pytest.raises(GroupInUse):  # web's outbound rule names db
            await groups.delete(c.alice, "db")

    _run(c, body)


def test_a_fresh_member_starts_at_once_and_its_host_gets_its_policy_first(c: Cluster) -> None:
    # ADR 0019: the node guards a VM whose group its policy does not know yet closed, in and
    # out, so a fresh start does not wait for the policy: the worker sends it beside the start.
    async def body(c: Cluster) -> None:
        groups = c.service.security_groups
        web = (await groups.create(c.alice, "web", "web")).group
        await groups.authorize(c.alice, web.id, [SSH])
        await c.service.firewalls.settle()  # every host acknowledged its (empty) policy
        vm = await _vm(c, "vm", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        sent_before: list[Policy] = []
        real_start, real_send = c.nodes.instantiate, c.nodes.set_firewall
        sends: list[HostId] = []

        async def instantiate(host: Any, instance: Instance) -> int:
            sent_before.append(c.nodes.firewalls[host.id])
            return await real_start(host, instance)

        async def set_firewall(host: Any, policy: Policy) -> str:
            sends.append(host.id)
            return await real_send(host, policy)

        c.nodes.instantiate = instantiate  # type: ignore[method-assign]
        c.nodes.set_firewall = set_firewall  # type: ignore[method-assign]
        await _start(c, vm, "h1")
        assert sent_before == [Policy()] and sends == []  # the start did not wait for it
        await c.service.firewalls.step()  # the worker, woken by the start
        ssh = Allow("tcp", 22, 22, ("10.0.0.0/8",))
        assert sends == [c.hosts[0]]  # its host, and no other needed anything
        assert c.nodes.firewalls[c.hosts[0]].groups == {_key(c.alice, web.id): (ssh,)}
        assert c.nodes.firewalls[c.hosts[1]].groups == {}  # no member there

    _run(c, body)


def test_a_fresh_members_policies_wait_for_its_start_then_its_host_goes_first(
    c: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While a fresh member starts (guarded closed on its node), nothing is planned or sent
    # for it: a pass would share the cores with the start, and until then every policy only
    # lets less in. Its start's answer (Running) wakes the worker: its host alone first, then
    # every host (the others let its address in).
    async def body(c: Cluster) -> None:
        web, db = await _web_and_db(c)
        store = await _vm(c, "store", "198.18.1.20", launched_in([(db.id, "db")]), c.alice)
        await _start(c, store, "h2")
        worker = c.service.firewalls
        await worker.step()  # its first pass: every host
        h1, h2 = c.hosts
        from_none = {_key(c.alice, db.id): (Allow("tcp", 5432, 5432, ()),)}
        assert c.nodes.firewalls[h2].groups == from_none  # web has no member yet
        plans: list[str] = []
        real_plan, real_plan_hosts = sync.plan, sync.plan_hosts

        def whole(tx: Transaction) -> sync.Plan:
            plans.append("every host")
            return real_plan(tx)

        def alone(tx: Transaction, hosts: Any) -> sync.Plan:
            plans.append(f"hosts {sorted(hosts)}")
            return real_plan_hosts(tx, hosts)

        monkeypatch.setattr(sync, "plan", whole)
        monkeypatch.setattr(sync, "plan_hosts", alone)
        reached, gate, real_start = asyncio.Event(), asyncio.Event(), c.nodes.instantiate

        async def instantiate(host: Any, instance: Instance) -> int:
            reached.set()
            await gate.wait()
            return await real_start(host, instance)

        c.nodes.instantiate = instantiate  # type: ignore[method-assign]
        front = await _vm(c, "front", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        starting = asyncio.create_task(_start(c, front, "h1"))
        await reached.wait()  # Activating, its node asked to start it
        worker.audit_every = 0.0
        await worker.step()  # nothing woke it: a pass now is an audit, with no host first
        assert plans == ["every host"]
        worker.audit_every = sync.AUDIT_EVERY
        gate.set()
        await starting
        await worker.step()  # woken by its Running
        assert plans == ["every host", f"hosts {[h1]}", "every host"]
        assert c.nodes.firewalls[h1].groups == {_key(c.alice, web.id): ()}
        from_web = Allow("tcp", 5432, 5432, ("198.18.1.10/32",))
        assert c.nodes.firewalls[h2].groups == {_key(c.alice, db.id): (from_web,)}

    _run(c, body)


def test_rules_and_members_change_every_host_that_needs_it(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        groups = c.service.security_groups
        web, db = await _web_and_db(c)
        front = await _vm(c, "front", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        store = await _vm(c, "store", "198.18.1.20", launched_in([(db.id, "db")]), c.alice)
        await _start(c, front, "h1")
        await _start(c, store, "h2")
        await c.service.firewalls.settle()
        h1, h2 = c.hosts
        from_web = Allow("tcp", 5432, 5432, ("198.18.1.10/32",))
        assert c.nodes.firewalls[h2].groups == {_key(c.alice, db.id): (from_web,)}
        assert c.nodes.firewalls[h1].groups == {_key(c.alice, web.id): ()}
        other = await _vm(c, "other", "198.18.1.11", launched_in([(web.id, "web")]), c.alice)
        await c.service.firewalls.settle()  # a member without a host is a member still
        both = Allow("tcp", 5432, 5432, ("198.18.1.10/32", "198.18.1.11/32"))
        assert c.nodes.firewalls[h2].groups == {_key(c.alice, db.id): (both,)}
        await c.service.instances.destroy_vm(c.alice, str(other.id))
        await c.service.firewalls.settle()
        assert c.nodes.firewalls[h2].groups == {_key(c.alice, db.id): (from_web,)}
        sends = len(c.nodes.firewall_sends)
        await c.service.firewalls.settle()
        assert len(c.nodes.firewall_sends) == sends  # nothing changed: nothing sent
        await groups.revoke(c.alice, db.id, [Rule("tcp", 5432, 5432, peer=web.id)])
        await c.service.firewalls.settle()
        assert c.nodes.firewalls[h2].groups == {_key(c.alice, db.id): ()}

    _run(c, body)


def test_a_migration_target_has_the_policy_before_the_vm_and_the_source_loses_it(
    c: Cluster,
) -> None:
    async def body(c: Cluster) -> None:
        groups = c.service.security_groups
        web = (await groups.create(c.alice, "web", "web")).group
        await groups.authorize(c.alice, web.id, [SSH])
        vm = await _vm(c, "vm", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        await _start(c, vm, "h1")
        await c.service.firewalls.settle()
        h1, h2 = c.hosts
        c.nodes.migration_gate = asyncio.Event()
        prepared_with: list[Policy] = []
        real = c.nodes.prepare_incoming

        async def prepare_incoming(host: Any, instance: Instance) -> Any:
            prepared_with.append(c.nodes.firewalls.get(host.id, Policy()))
            return await real(host, instance)

        c.nodes.prepare_incoming = prepare_incoming  # type: ignore[method-assign]
        await c.service.instances.migrate_vm(c.admin, str(vm.id), "h2")
        wanted = {_key(c.alice, web.id): (Allow("tcp", 22, 22, ("10.0.0.0/8",)),)}
        assert [p.groups for p in prepared_with] == [wanted]
        c.nodes.migration_gate.set()
        await c.service.instances._migrations.wait()
        moved = await c.service.instances.get(c.admin, str(vm.id))
        assert moved.host_id == h2
        await c.service.firewalls.settle()
        assert c.nodes.firewalls[h2].groups == wanted
        assert c.nodes.firewalls[h1].groups == {}

    _run(c, body)


def test_a_node_that_misses_a_send_gets_it_again(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        groups = c.service.security_groups
        web = (await groups.create(c.alice, "web", "web")).group
        vm = await _vm(c, "vm", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        await _start(c, vm, "h1")
        await c.service.firewalls.settle()
        h1 = c.hosts[0]
        c.nodes.dead.add(h1)
        await groups.authorize(c.alice, web.id, [SSH])
        await c.service.firewalls.settle()  # refused: remembered as not acknowledged
        assert c.nodes.firewalls[h1].groups == {_key(c.alice, web.id): ()}
        c.nodes.dead.discard(h1)
        sync = c.service.firewalls
        sync.retry_every = 0.01
        await sync.step()  # the worker's next pass, after the retry delay
        ssh = Allow("tcp", 22, 22, ("10.0.0.0/8",))
        assert c.nodes.firewalls[h1].groups == {_key(c.alice, web.id): (ssh,)}

    _run(c, body)


def test_another_users_group_named_by_a_hint_lets_nothing_in(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore())

    async def body(c: Cluster) -> None:
        async def bob() -> Principal:
            made = await c.service.db.write(
                lambda tx: tx.users.add(
                    "bob", role=Role.user, priority=0, password_hash="x", now=c.clock.now()
                )
            )
            return Principal(UserId(made.id), "bob", Role.user)

        groups = c.service.security_groups
        web = (await groups.create(c.alice, "web", "web")).group
        await groups.authorize(c.alice, web.id, [SSH])
        mallory = await bob()
        mine = await _vm(c, "mine", "198.18.1.10", {}, c.alice, securityGroups=web.id)
        await _start(c, mine, "h1")
        vm = await _vm(c, "sneaky", "198.18.1.99", {}, mallory, securityGroups=web.id)
        await _start(c, vm, "h1")
        await c.service.firewalls.settle()
        ssh = Allow("tcp", 22, 22, ("10.0.0.0/8",))
        policy = c.nodes.firewalls[c.hosts[0]]
        assert policy.groups == {
            _key(c.alice, web.id): (ssh,),  # alice's own createVm instance: her rules
            _key(mallory, web.id): (),  # under bob's name: no rules at all
        }
        with pytest.raises(NotFound):
            await groups.find(mallory, web.id)

    _run(c, body)


def test_a_host_that_registers_again_is_sent_its_policy(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        from tashi.clustermanager.events import HostUp

        groups = c.service.security_groups
        web = (await groups.create(c.alice, "web", "web")).group
        vm = await _vm(c, "vm", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        await _start(c, vm, "h1")
        await c.service.firewalls.settle()
        sends = c.nodes.firewall_sends.count(HostId(c.hosts[0]))
        host = await c.service.db.read(lambda tx: tx.hosts.get(c.hosts[0]))
        await c.service.events.publish(HostUp(host))
        await c.service.firewalls.step()
        assert c.nodes.firewall_sends.count(HostId(c.hosts[0])) == sends + 1

    _run(c, body)


class _Reads:
    """A transaction whose instance reads are recorded (the filters ``find`` was given)."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self.filters: list[InstanceFilter] = []
        outer = self

        class Instances:
            def find(self, where: InstanceFilter | None = None) -> list[Instance]:
                where = InstanceFilter() if where is None else where
                outer.filters.append(where)
                return outer._tx.instances.find(where)

        self.instances = Instances()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


def test_a_hosts_own_plan_is_its_part_of_the_whole_and_reads_no_listing(tmp_path: Path) -> None:
    """What a VM about to land waits for (``plan_hosts``) equals what the worker's pass over
    every instance makes for that host (``plan``), in every case ``plan`` knows: groups naming
    others, a member with no host, another user's group named by a hint, a group that lets
    nothing out, a migration in flight; and it never lists every instance."""

    async def body(c: Cluster) -> None:
        groups = c.service.security_groups
        web = (await groups.create(c.alice, "web", "web")).group
        db = (await groups.create(c.alice, "db", "db")).group
        shut = (await groups.create(c.alice, "shut", "lets nothing out")).group
        await groups.revoke(c.alice, shut.id, [DEFAULT_EGRESS])
        await groups.authorize(c.alice, db.id, [Rule("tcp", 5432, 5432, peer=web.id), SSH])
        await groups.authorize(c.alice, web.id, [Rule("tcp", 5432, 5432, peer=db.id, egress=True)])
        default = await groups.default(c.alice)
        h1, h2 = c.hosts
        front = await _vm(c, "front", "198.18.1.10", launched_in([(web.id, "web")]), c.alice)
        store = await _vm(
            c, "store", "198.18.1.20", launched_in([(db.id, "db"), (shut.id, "shut")]), c.alice
        )
        await _vm(c, "waiting", "198.18.1.11", launched_in([(web.id, "web")]), c.alice)
        plain = await _vm(c, "plain", "198.18.1.12", launched_in([(default.id, "")]), c.alice)
        other = await _vm(c, "other", "198.18.1.99", {}, c.admin, securityGroups=web.id)
        for inst, host in ((front, "h1"), (store, "h2"), (plain, "h1"), (other, "h2")):
            await _start(c, inst, host)

        async def same_plans() -> None:
            whole = await c.service.db.read(sync.plan)
            assert whole.policies[h2].groups[_key(c.alice, db.id)]  # something to compare
            for hosts in ([h1], [h2], [h1, h2]):
                reads: list[_Reads] = []

                def focused(
                    tx: Transaction, hosts: list[HostId] = hosts, reads: list[_Reads] = reads
                ) -> sync.Plan:
                    reads.append(_Reads(tx))
                    return sync.plan_hosts(reads[-1], hosts)  # type: ignore[arg-type]

                mine = await c.service.db.read(focused)
                assert mine.policies == {h: whole.policies[h] for h in hosts}
                listed = [f for f in reads[0].filters if f == InstanceFilter()]
                assert not listed and reads[0].filters

        await same_plans()
        c.nodes.migration_gate = asyncio.Event()
        await c.service.instances.migrate_vm(c.admin, str(front.id), "h2")
        await same_plans()  # front is on h1 and moving to h2: both have web
        c.nodes.migration_gate.set()
        await c.service.instances._migrations.wait()
        await same_plans()

    _run(cluster(tmp_path, MemoryStore(), cores=4), body)
