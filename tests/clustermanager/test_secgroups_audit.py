"""``FirewallSync`` driven by what node managers report (``events.FirewallReported``): a host
whose node reports the version it was planned is never sent its policy again, not even by an
audit; one that reports another version (it missed a change, or lost its policy with its state
directory) is sent its policy by the worker's next pass; a node that reports no version (an
older node manager) is audited blind, as before. Over the scripted node managers of
``fakenodes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tashi.clustermanager.events import FirewallReported, HostUp
from tashi.clustermanager.secgroups.sync import FirewallSync
from tashi.domain.firewall import Allow, Policy
from tashi.domain.ids import HostId
from tashi.domain.operations import DiskRequest, NicRequest, VmRequest
from tashi.domain.secgroups import Rule, launched_in
from tashi.storage.memory import MemoryStore
from tests.clustermanager.fakenodes import Cluster, cluster

SSH = Rule("tcp", 22, 22, cidr="10.0.0.0/8")
LONG = 3600.0  # an audit period no test waits for
STEP = 5.0  # seconds a pass woken by a report may take before the test fails


@pytest.fixture
def c(tmp_path: Path) -> Cluster:
    return cluster(tmp_path, MemoryStore())


def _run(c: Cluster, body: Callable[[Cluster], Awaitable[Any]]) -> Any:
    return asyncio.run(body(c))


async def _member_on_h1(c: Cluster) -> FirewallSync:
    """A member of a group with a rule running on h1; every host sent its policy and
    acknowledged it; the worker idle (nothing woke it since) with no audit due."""
    groups = c.service.security_groups
    web = (await groups.create(c.alice, "web", "web")).group
    await groups.authorize(c.alice, web.id, [SSH])
    request = VmRequest(
        name="vm",
        disks=[DiskRequest(uri="base.qcow2")],
        nics=[NicRequest(network=1, ip="198.18.1.10")],
        own_hints=launched_in([(web.id, "web")]),
    )
    vm = await c.service.instances.create_vm(c.alice, request)
    await c.service.instances.activate_vm(c.agent, str(vm.id), "h1")
    sync = c.service.firewalls
    sync.audit_every = sync.blind_every = LONG
    await sync.step()  # the first pass (and the one the start woke)
    await sync.settle()
    assert c.nodes.firewalls[c.hosts[0]].groups  # h1 has the group's rule
    return sync


async def _report(c: Cluster, host: HostId, version: str | None) -> None:
    await c.service.events.publish(FirewallReported(host, version))


async def _holds(c: Cluster, *hosts: HostId) -> None:
    """Each host's node reports the version it holds (the last one it was sent)."""
    for host in hosts:
        await _report(c, host, c.nodes.firewalls[host].version)


def _sends(c: Cluster) -> list[HostId]:
    return list(c.nodes.firewall_sends)


def test_an_audit_sends_nothing_to_hosts_that_report_what_they_were_sent(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        sync = await _member_on_h1(c)
        await _holds(c, *c.hosts)  # the versions they were sent: nothing to do
        before = _sends(c)
        sync.audit_every = 0.01
        await sync.step()  # an audit: every host planned again
        assert _sends(c) == before

    _run(c, body)


def test_a_node_that_reports_another_version_is_sent_its_policy(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        sync = await _member_on_h1(c)
        h1 = c.hosts[0]
        await _holds(c, *c.hosts)
        kept = c.nodes.firewalls[h1]
        c.nodes.firewalls[h1] = Policy()  # its node manager restarted with a new state dir
        before = _sends(c)
        await _report(c, h1, Policy().version)  # its registration says so
        await asyncio.wait_for(sync.step(), STEP)  # woken by the report: no audit due
        assert _sends(c) == [*before, h1]  # that host alone
        assert c.nodes.firewalls[h1] == kept

    _run(c, body)


def test_a_host_up_again_that_reports_the_version_planned_is_sent_nothing(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        sync = await _member_on_h1(c)
        h1, h2 = c.hosts
        await _holds(c, h2)
        host = await c.service.db.read(lambda tx: tx.hosts.get(h1))
        before = _sends(c)
        await c.service.events.publish(HostUp(host))  # the cluster manager forgets its ack
        await _holds(c, h1)  # its registration: it kept its policy
        await asyncio.wait_for(sync.step(), STEP)  # the pass HostUp woke
        assert _sends(c) == before

    _run(c, body)


def test_a_node_that_reports_no_version_is_sent_its_policy_at_every_audit(c: Cluster) -> None:
    async def body(c: Cluster) -> None:
        sync = await _member_on_h1(c)
        h1, h2 = c.hosts
        await _holds(c, h1)
        await _report(c, h2, None)  # an older node manager
        before = _sends(c)
        sync.blind_every = 0.01  # while such a node is up, audits come this often
        await asyncio.wait_for(sync.step(), STEP)
        await asyncio.wait_for(sync.step(), STEP)
        assert _sends(c) == [*before, h2, h2]  # changed or not, as before

    _run(c, body)


def test_a_cluster_manager_that_starts_sends_nothing_to_hosts_that_report_their_policy(
    c: Cluster,
) -> None:
    async def body(c: Cluster) -> None:
        await _member_on_h1(c)
        # another cluster manager process over the same store: it knows no acknowledgement,
        # but the hosts' first reports to it name their versions before its first pass
        fresh = FirewallSync(c.service.db, c.service.nodes, audit_every=LONG)
        for host in c.hosts:
            await fresh.on_reported(FirewallReported(host, c.nodes.firewalls[host].version))
        before = _sends(c)
        await asyncio.wait_for(fresh.step(), STEP)
        assert _sends(c) == before
        c.nodes.firewalls[c.hosts[0]] = Policy()  # and one that lost it is set right
        await fresh.on_reported(FirewallReported(c.hosts[0], Policy().version))
        await asyncio.wait_for(fresh.step(), STEP)
        ssh = Allow("tcp", 22, 22, ("10.0.0.0/8",))
        assert _sends(c) == [*before, c.hosts[0]]
        assert list(c.nodes.firewalls[c.hosts[0]].groups.values()) == [(ssh,)]

    _run(c, body)


def test_what_was_sent_to_a_host_goes_with_the_host(c: Cluster) -> None:
    """Nothing the sync keeps grows with the hosts ever known: an unregistered host's
    acknowledgement and send record go at the next whole pass."""

    async def body(c: Cluster) -> None:
        sync = await _member_on_h1(c)
        h2 = c.hosts[1]
        assert h2 in sync._acked
        await c.service.hosts.unregister_host(c.admin, str(h2))
        await sync.settle()
        assert h2 not in sync._acked and h2 not in sync._sent and h2 not in sync._host_locks
        assert c.hosts[0] in sync._acked

    _run(c, body)
