"""``FirewallSync``: each host's node manager is sent the security-group policy of the VMs it
runs (``domain/firewall.py``), whole, whenever it changes; the node enforces it on their taps.

What a host needs (``plan``): the groups of the instances placed on it (``host_id``, and the
target of a migration in flight, ``migration.target_of``), each with its rules, a rule naming a
group resolved to the addresses of that group's members (every instance of the group's owner
that is in it and has an address). A group an instance names that is not its owner's counts
as a group with no rules: its members let nothing in but replies.

When it is sent (``docs/adr/0019-security-groups.md``):

* **once a fresh VM's start is answered**: the event hub tells of every instance state change
  (``on_instance``, awaited on the writer's path); an instance in groups entering Running from
  Activating (a fresh boot whose node has started it) has its host handed to the worker, which
  sends that host's new policy first, then every host's (the others' rules naming its groups
  let its address in). Nothing is planned or sent for it before: not while it is new, held or
  queued (on no host), nor while its node starts it, which a database read, a round trip to
  the node and its nftables transaction would slow by sharing the cores. The node guards the
  VM's taps before its guest runs in any case: a group its policy does not know yet lets
  nothing in or out but replies, ARP, DHCP and the metadata service until the policy comes
  (``nodemanager/secgroups``), and until then no other host lets its address in, so nothing
  any policy forbids ever passes: the guest is closed for its start and one round trip more,
  before its boot has gone far enough to use the network;
* **before a VM with a past lands on a host** (PreparingDisk, whose copy takes longer anyway;
  Resuming; MigratePrep for the target: a restored or moved VM has connections that must not
  pause): that host's new policy is sent *then*, awaited, before the node is asked to start
  it. Both are planned from what the host touches alone (``plan_hosts``: the instances on it,
  their groups and rules, the members of the groups those rules name), never from a read of
  every instance, so a start's wait does not grow with the cluster;
* **promptly after any other change** (a rule authorized or revoked, a group deleted, a member
  gone or moved, an address given): ``rules_changed``/``on_instance`` wake the one worker
  (``step``), which plans every host at once (``plan``: one read of every instance for the
  whole pass, not one per host) and sends those whose policy differs from the one they
  acknowledged;
* **when a node reports a version that differs** (``on_reported``): a node manager names the
  version of the policy it enforces in its registration and its heartbeats
  (``Heartbeat.firewall``); the version is part of a report's key, so a changed one makes the
  report go the whole way (not a renewal, ADR 0023), and ``NodeReports`` publishes it
  (``FirewallReported``). It is that host's acknowledgement: one that differs from the host's
  planned version wakes the worker, which sends the host its policy. So a node manager that
  missed a change or lost its policy (restarted with another state directory, say) is set
  right within a heartbeat, and an unchanged policy is never sent again;
* **again after a failure** (``retry_every``), at once when the cluster manager starts (it
  knows of no acknowledgement yet), and to a host that is up again (``on_host_up``). A host
  that is down is sent nothing;
* **at an audit** every ``audit_every`` seconds (300): one pass of the worker, one ``plan`` for
  every host, sending only what differs from what each acknowledged or reported: a safety net
  for a change no event told of (a write by another tool on the database). A node that does not
  report its version (an older node manager) is audited blind, as every node once was: while
  one is up, audits come every ``blind_every`` seconds (30) and send it its policy whether or
  not it changed.

A send is idempotent: the node compares versions (``Policy.version``, a digest of the content)
and does nothing for the one it has; the node answers the version it now enforces.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from tashi.clustermanager.database import Database
from tashi.clustermanager.events import FirewallReported, HostUp, InstanceStateChanged
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.clustermanager.instances.migration import target_of
from tashi.domain import firewall
from tashi.domain.errors import TashiError
from tashi.domain.firewall import Policy
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import Host, Instance
from tashi.domain.secgroups import Rule, groups_of
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceFilter, Transaction

log = logging.getLogger(__name__)

S = InstanceState
#: States in which an instance is on its host (or about to be), so its groups are that host's.
_PLACED = frozenset(
    {
        S.PreparingDisk,
        S.Activating,
        S.Resuming,
        S.Running,
        S.Pausing,
        S.Paused,
        S.Unpausing,
        S.MigratePrep,
        S.MigrateTrans,
        S.Suspending,
        S.Stopping,
        S.ShuttingDown,
        S.Destroying,
        S.Orphaned,
    }
)
#: States after which a node is asked to run the VM: its host's policy goes first.
_ARRIVING = frozenset({S.PreparingDisk, S.Resuming, S.MigratePrep})
#: ... or once the start is answered, for a fresh VM: it boots guarded closed until then.
_FRESH = frozenset({S.Activating})
AUDIT_EVERY = 300.0  # seconds between audits: every host planned, what differs sent
BLIND_EVERY = 30.0  # ... while a node does not report its version: sent to it, changed or not
RETRY_EVERY = 2.0  # seconds before a failed send is tried again


@dataclass(frozen=True, slots=True)
class Plan:
    hosts: dict[HostId, Host]
    policies: dict[HostId, Policy]  # every host's, empty for a host with no grouped VM
    grouped: frozenset[InstanceId]


def plan(tx: Transaction) -> Plan:
    """Every host's policy, from the store as it is in ``tx`` (every instance read: the
    worker's, once per pass)."""
    groups = {g.id: g for g in tx.security_groups.list()}
    held = tx.security_groups.rules()
    rules = {firewall.key(g.user_id, g.id): held.get(g.id, []) for g in groups.values()}
    members: dict[str, list[str]] = {}
    wanted: dict[HostId, set[str]] = {}
    grouped: set[InstanceId] = set()
    for inst in tx.instances.find():
        names = groups_of(inst.hints)
        if not names:
            continue
        grouped.add(inst.id)
        for group in names:
            if group in groups and groups[group].user_id == inst.user_id:
                members.setdefault(group, []).extend(n.ip for n in inst.nics if n.ip)
        for host in hosts_of(inst):
            wanted.setdefault(host, set()).update(firewall.key(inst.user_id, g) for g in names)
    hosts = {h.id: h for h in tx.hosts.list()}
    policies = {h: firewall.resolve(rules, members, wanted.get(h, ())) for h in hosts}
    return Plan(hosts, policies, frozenset(grouped))


def plan_hosts(tx: Transaction, host_ids: Iterable[HostId]) -> Plan:
    """The policies of ``host_ids`` alone, equal to ``plan``'s for them, from what they touch:
    the instances on each host (or moving to it), the groups those are in with their rules,
    and the members of the groups those rules name (read among their owners' instances).
    What a VM about to land waits for: no read of every instance."""
    hosts = {h.id: h for h in tx.hosts.list(ids=sorted(set(host_ids)))}
    if not hosts:
        return Plan({}, {}, frozenset())
    wanted: dict[HostId, set[str]] = {h: set() for h in hosts}
    grouped: set[InstanceId] = set()
    for inst in _arriving_or_on(tx, hosts.keys()):
        names = groups_of(inst.hints)
        on = [h for h in hosts_of(inst) if h in wanted]
        if names and on:
            grouped.add(inst.id)
        for host in on:
            wanted[host].update(firewall.key(inst.user_id, g) for g in names)
    rules = _rules_of(tx, set().union(*wanted.values()))
    members = _members(tx, {r.peer for held in rules.values() for r in held if not r.cidr})
    policies = {h: firewall.resolve(rules, members, wanted[h]) for h in hosts}
    return Plan(hosts, policies, frozenset(grouped))


def _arriving_or_on(tx: Transaction, host_ids: Iterable[HostId]) -> list[Instance]:
    """The instances recorded on the hosts, and those migrating to one of them."""
    found = {i.id: i for h in host_ids for i in tx.instances.find(InstanceFilter(host_id=h))}
    moving = tx.instances.find(InstanceFilter(states=(S.MigratePrep, S.MigrateTrans)))
    found.update((i.id, i) for i in moving)
    return list(found.values())


def _rules_of(tx: Transaction, keys: Iterable[str]) -> dict[str, list[Rule]]:
    """The rules of the groups ``keys`` (``firewall.key``) that exist under that owner (one
    without rules: empty); a key naming no group of its owner is left out, as ``plan`` does."""
    owned: dict[str, str] = {}
    for key in keys:
        owner, _, group_id = key.partition(":")
        group = tx.security_groups.get(group_id)
        if group is not None and str(group.user_id) == owner:
            owned[group_id] = key
    held = tx.security_groups.rules(sorted(owned))
    return {key: held.get(group_id, []) for group_id, key in owned.items()}


def _members(tx: Transaction, peers: Iterable[str]) -> dict[str, list[str]]:
    """The addresses of each group's members (its owner's instances in it, in any state)."""
    members: dict[str, list[str]] = {}
    owners: dict[UserId, list[Instance]] = {}
    for peer in sorted(set(peers)):
        group = tx.security_groups.get(peer)
        if group is None:
            continue
        if group.user_id not in owners:
            owners[group.user_id] = tx.instances.find(InstanceFilter(user_id=group.user_id))
        for inst in owners[group.user_id]:
            if peer in groups_of(inst.hints):
                members.setdefault(peer, []).extend(n.ip for n in inst.nics if n.ip)
    return members


def hosts_of(inst: Instance) -> list[HostId]:
    """The hosts an instance is on or moving to, as far as its groups go."""
    if inst.state not in _PLACED:
        return []
    out = [inst.host_id] if inst.host_id is not None else []
    target = target_of(inst) if inst.state in (S.MigratePrep, S.MigrateTrans) else None
    return out + ([target] if target is not None and target not in out else [])


def _woken(event: asyncio.Event) -> asyncio.Event:
    """The worker's first pass runs at once: a cluster manager that starts sends every host
    its policy (it knows of no acknowledgement yet, and members may have gone meanwhile)."""
    event.set()
    return event


@dataclass
class FirewallSync:
    db: Database
    nodes: NodeGateway
    audit_every: float = AUDIT_EVERY
    blind_every: float = BLIND_EVERY
    retry_every: float = RETRY_EVERY
    #: the version each host's node last acknowledged or reported (absent: not known)
    _acked: dict[HostId, str] = field(default_factory=dict)
    #: hosts whose node reports the version it enforces (the others are audited blind)
    _reporting: set[HostId] = field(default_factory=set)
    #: each host's version in the latest plan that covered it, and the hosts up in the last
    #: whole plan
    _planned: dict[HostId, str] = field(default_factory=dict)
    _up: frozenset[HostId] = frozenset()
    #: the event loop's time of the last audit (``None``: the worker has not run yet)
    _audited: float | None = None
    #: instances known to be in groups (their removal changes the plan)
    _grouped: set[InstanceId] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=lambda: _woken(asyncio.Event()))
    #: hosts a fresh VM has just started on, whose policy the worker sends first
    _arriving: set[HostId] = field(default_factory=set)
    _failed: bool = False
    #: plans are numbered in the order they were begun; a host is never sent an older plan
    #: after a newer one (``_sent``), and its sends go one at a time (``_host_locks``)
    _plans: int = 0
    _sent: dict[HostId, int] = field(default_factory=dict)
    _host_locks: dict[HostId, asyncio.Lock] = field(default_factory=dict)

    # --- what the rest of the cluster manager tells it ---------------------------------

    def rules_changed(self) -> None:
        self._wake.set()

    async def on_instance(self, event: InstanceStateChanged) -> None:
        inst = event.instance
        if inst is None or not groups_of(inst.hints):
            if event.instance_id in self._grouped:  # a member went
                self._grouped.discard(event.instance_id)
                self._wake.set()
            return
        self._grouped.add(inst.id)
        if event.previous not in _PLACED and (
            event.current in _FRESH or event.current not in _PLACED
        ):
            # A fresh VM starts guarded closed if its group is new to the host, and its
            # address is let in by other hosts' rules naming its groups only once they are
            # sent: both wait for its start's answer (below), not to share the cores with the
            # start; until then every policy only lets less in. New, held or queued again (on
            # no host before or now): nothing else changed (an audit sends its address too).
            return
        if event.previous in _FRESH and event.current is S.Running:
            # Its start was answered: its host's policy first (a read of what that host
            # touches), then every host's.
            self._arriving.update(hosts_of(inst))
            self._wake.set()
            return
        try:
            if event.current in _ARRIVING:
                # The worker (whose pass reads every instance) is woken after this host's
                # send, not beside it: on a busy machine it slowed the move it was woken by.
                await self.send(set(hosts_of(inst)))
        finally:
            self._wake.set()

    async def on_host_up(self, event: HostUp) -> None:
        self._acked.pop(event.host.id, None)
        self._wake.set()

    async def on_reported(self, event: FirewallReported) -> None:
        """A node's full report or registration named the version it enforces: that is its
        acknowledgement. One that differs from what this host was last planned wakes the
        worker, which sends it its policy; the same one costs nothing. A node that names none
        is audited blind (sent its policy every ``blind_every`` seconds, changed or not)."""
        host, version = event.host_id, event.version
        if version is None:
            self._reporting.discard(host)
            return
        self._reporting.add(host)
        if self._acked.get(host) == version:
            return
        self._acked[host] = version
        if self._planned.get(host) != version:
            self._wake.set()

    # --- the worker ----------------------------------------------------------------------

    async def step(self) -> None:
        """Wait for a change (or the next audit, or retry) and send what it calls for; run
        again and again by the cluster manager's supervisor."""
        now = asyncio.get_running_loop().time()
        if self._audited is None:
            self._audited = now  # the first pass, at once, sends every host its policy
        wait = self.retry_every if self._failed else self._audited + self._period() - now
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.0))
            audit = False
        except TimeoutError:
            audit = not self._failed
        self._wake.clear()
        if audit:
            self._audited = asyncio.get_running_loop().time()
        arriving, self._arriving = self._arriving, set()
        if arriving:
            await self.send(arriving)
        await self.send(None, audit=audit)

    def _period(self) -> float:
        """Seconds between audits: ``blind_every`` while an up host's node does not report its
        version, else ``audit_every``."""
        blind = any(h not in self._reporting for h in self._up)
        return self.blind_every if blind else self.audit_every

    async def send(self, only: Iterable[HostId] | None, *, audit: bool = False) -> None:
        """Send each host (of ``only``, when given) its policy if it differs from what it
        acknowledged (``audit``: a host whose node does not report its version, whatever it
        acknowledged), to all hosts at once. Failures are logged and retried by ``step``;
        this never raises for them.

        Sends for a VM about to start run beside the worker's, not after them: a send of an
        older plan that meets a newer one already sent to its host is dropped, and any change
        a plan missed has woken the worker, whose next pass plans again."""
        self._plans += 1
        number = self._plans
        if only is None:
            made = await self.db.read(plan)
        else:
            hosts = set(only)
            made = await self.db.read(lambda tx: plan_hosts(tx, hosts))
        self._grouped |= made.grouped
        versions = {h: p.version for h, p in made.policies.items()}
        if only is None:
            self._planned = versions
            self._up = frozenset(h for h, host in made.hosts.items() if host.up)
            self._forget_gone(made.hosts.keys())
        else:
            self._planned.update(versions)
        chosen = sorted(made.policies)
        sent = await asyncio.gather(
            *(
                self._send_host(number, made.hosts[h], made.policies[h], versions[h], audit)
                for h in chosen
            )
        )
        failed = not all(sent)
        if only is None:
            self._failed = failed
        elif failed:
            self._failed = True
            self._wake.set()

    def _forget_gone(self, hosts: Iterable[HostId]) -> None:
        """What is sent to each host goes with the host (removed from the cluster), so it
        does not grow with the hosts ever known. (A host that registered while this plan was
        read is forgotten too: it is sent its policy once more.) Which hosts report their
        version stays: a plan that raced a registration must not make that host blind."""
        known = set(hosts)
        for kept in (self._acked, self._sent):
            for gone in kept.keys() - known:
                del kept[gone]
        for gone in self._host_locks.keys() - known:
            if not self._host_locks[gone].locked():
                del self._host_locks[gone]

    async def _send_host(
        self, number: int, host: Host, policy: Policy, version: str, audit: bool
    ) -> bool:
        async with self._host_locks.setdefault(host.id, asyncio.Lock()):
            if self._sent.get(host.id, 0) > number:
                return True  # a newer plan went to it meanwhile
            if not host.up:  # sent when it is up again (``on_host_up``)
                self._acked.pop(host.id, None)
                return True
            blind = audit and host.id not in self._reporting
            if not blind and self._acked.get(host.id) == version:
                return True
            self._sent[host.id] = number
            return await self._send_one(host, policy, version)

    async def _send_one(self, host: Host, policy: Policy, version: str) -> bool:
        try:
            acked = await self.nodes.set_firewall(host, policy)
        except TashiError as exc:
            self._acked.pop(host.id, None)
            log.warning(
                "host %s: its security-group policy %s was not taken (%s); trying again",
                host.name,
                version,
                exc.message,
            )
            return False
        self._acked[host.id] = acked
        return acked == version

    async def settle(self) -> None:
        """Send every host what differs now (tests; the worker does it by itself)."""
        self._wake.clear()
        await self.send(None)
