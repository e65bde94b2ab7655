"""The cluster manager's side of node reports: registration, heartbeats and VM events.

Only a principal of role ``node`` may report, and only about the host it registered (a host is
bound to the node account that registered it first; an admin may re-bind it by unregistering
the host). Registration creates the host when it is new (SLA@SOI's automatic registration).
Every report is reconciled against the store with ``reconcile.plan``; each resulting change is
a compare-and-swap on the state it was planned from, so a report that races a user's request
simply loses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from tashi.clustermanager.accounts.auth import require_role
from tashi.clustermanager.database import Database
from tashi.clustermanager.events import FirewallReported, VmStopped
from tashi.clustermanager.hosts.book import HostBook, same_ring
from tashi.clustermanager.hosts.confirmations import Confirmations
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.clustermanager.hosts.reconcile import Decision, Observed, Seen, plan, waiting
from tashi.clustermanager.hosts.renewals import Renewals
from tashi.clustermanager.hosts.underlay import config_with, peers_of
from tashi.clustermanager.hosts.witnesses import WitnessDesk
from tashi.clustermanager.instances.suspends import SuspendArea, may_hold_a_file
from tashi.domain import validation
from tashi.domain.clock import Clock
from tashi.domain.errors import Forbidden, InvalidInput, NotFound, StateConflict, TashiError
from tashi.domain.hints import without_resume
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import Host, Instance, Principal, Role
from tashi.domain.nodes import (
    Acknowledged,
    Heartbeat,
    NodeEvent,
    Registration,
    Renewal,
    ReportKey,
    VmReport,
    WitnessSet,
    heartbeat_key,
)
from tashi.domain.states import (
    INSTANCE_TRANSITIONS,
    OFF_HOST,
    ON_HOST,
    Action,
    HostState,
    InstanceState,
    next_state,
)
from tashi.runtime.hub import EventHub
from tashi.storage.contract import InstanceChanges, InstanceFilter, Transaction

log = logging.getLogger(__name__)

#: a host's witness set for its reply, with the ring's hosts looked at to choose it and whether
#: the ring ran out before enough were found (``WitnessDesk.assign``)
_Witnesses = tuple[WitnessSet, tuple[HostId, ...], bool] | None

_RESIDENT = sorted(ON_HOST | {InstanceState.Orphaned})

#: A node event kind -> the action it means for the instance.
EVENT_ACTIONS: dict[str, Action] = {
    "exited": Action.exited,
    "suspended": Action.suspended,
    "suspendFailed": Action.suspend_failed,
    "started": Action.started,
    "failed": Action.start_failed,
}


@dataclass(frozen=True, slots=True)
class NodeRules:
    version: str
    allow_mismatched_versions: bool
    heartbeat_interval: float
    expire_host_time: float
    grace: float
    allow_duplicate_names: bool = False
    host_lease: float = 0.0  # HA lease granted with each heartbeat reply (0: none)


class ReportedHosts(Protocol):
    def on_report(
        self, tx: Transaction, host: Host, reported: set[int], fenced: Sequence[int], now: datetime
    ) -> list[Instance]:
        """In the write of a host's report, the host as stored before it, the instance ids it
        reports and those it says it fenced: what its report means before it is reconciled
        (``ha.HighAvailability``: what it fenced runs elsewhere); the instances it moved."""

    async def after_report(self, host: Host, moved: list[Instance], fenced: bool) -> None:
        """After that write committed, with what ``on_report`` moved."""


class NodeReports:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        rules: NodeRules,
        nodes: NodeGateway,
        witnesses: WitnessDesk,
        suspends: SuspendArea,
        *,
        reported: ReportedHosts,
        awaited: Collection[InstanceId],
        hub: EventHub,
        confirmations: Confirmations,
        book: HostBook,
        renewals: Renewals,
    ) -> None:
        self._db = db
        #: each host's last settled report, and the group commit of the renewals (ADR 0023)
        self._book = book
        self._renewals = renewals
        #: heartbeats answered as renewals, and those that went the whole way (``/metrics``)
        self.renewed = 0
        self.full = 0
        self._suspends = suspends
        self._clock = clock
        self._rules = rules
        self._nodes = nodes
        self._witnesses = witnesses
        self._reported = reported
        #: Told of an instance (as it was) whose VM failed or exited (``events.VmStopped``),
        #: and of the policy version each full report carries (``events.FirewallReported``).
        self._hub = hub
        self._hosts_seen: tuple[int, list[Host]] | None = None  # (hosts_version, the hosts)
        self._ring_seen: tuple[int, list[HostId]] | None = None  # (hosts_version, up ids)
        self._ring_reading = asyncio.Lock()
        #: Instances whose start a node has not answered yet (``InstanceService.awaited``, the
        #: same set, live): reports leave them alone (``reconcile.plan``).
        self._awaited = awaited
        #: Told of each host whose report has been reconciled.
        self._confirmations = confirmations

    def _state_for(self, host: Host, version: str) -> HostState:
        if version != self._rules.version and not self._rules.allow_mismatched_versions:
            return HostState.VersionMismatch
        if host.state is HostState.VersionMismatch:
            return HostState.Normal
        return host.state

    async def register(self, caller: Principal, body: Registration) -> Acknowledged:
        require_role(caller, Role.node, doing="registering a node")
        validation.host_name(body.name)
        if not body.endpoint.startswith(("http://", "https://")):
            raise InvalidInput("the endpoint must be an http:// or https:// URL")
        now = self._clock.now()
        reported: set[int] = {r.instance.id for r in body.vms}
        ring = await self._ring()

        def run(tx: Transaction) -> tuple[Host, Host, _Witnesses, list[Instance]]:
            try:
                host = tx.hosts.lock(tx.hosts.get_by_name(body.name).id)
            except NotFound:
                host = tx.hosts.add(
                    body.name, memory=body.memory, cores=body.cores, version=body.version, now=now
                )
            link = tx.hosts.link(host.id)
            if link is not None and link.user_id != caller.user_id:
                raise Forbidden(f"host {host.name!r} belongs to another node account")
            moved = self._reported.on_report(tx, host, reported, body.fenced, now)
            tx.hosts.set_link(
                host.id,
                endpoint=body.endpoint,
                secret=body.secret,
                user_id=caller.user_id,
                now=now,
                peer_secret=body.peer_secret,
            )
            witnesses = self._assign(tx, host.id, ring, body.witness_epoch)
            wanted = self._state_for(host, body.version)
            before = host
            if wanted is not host.state:
                host = tx.hosts.set_state(host.id, host.state, wanted)
            updated = tx.hosts.update(
                host.id,
                up=True,
                memory=body.memory,
                cores=body.cores,
                cpu_speed=body.cpu_speed,
                version=body.version,
                last_heartbeat=now,
                lease_expires=self._lease(now),
                config=config_with(host, body.underlay),
            )
            return before, updated, witnesses, moved

        before, host, witnesses, moved = await self._db.write(run, urgent=True)
        self._book.forget(host.id)  # its first heartbeat goes the whole way
        if host.state is HostState.VersionMismatch:
            log.warning(
                "host %s runs version %s, not %s: no VMs will go there",
                host.name,
                body.version,
                self._rules.version,
            )
        await self._reported.after_report(before, moved, bool(body.fenced))
        await self._hub.publish(FirewallReported(host.id, body.firewall))
        await self._reconcile(host.id, body.vms)
        self._confirmations.confirm(host.id, now)
        return Acknowledged(
            host_id=host.id,
            state=host.state.name,
            heartbeat_interval=self._rules.heartbeat_interval,
            expire_host_time=self._rules.expire_host_time,
            lease_time=self._rules.host_lease,
            peers=await self._peers(host.id) if body.underlay else None,
            witnesses=witnesses[0] if witnesses else None,
        )

    def _assign(
        self, tx: Transaction, host_id: HostId, ring: Sequence[HostId], epoch: int | None
    ) -> _Witnesses:
        if self._rules.host_lease <= 0:  # HA is off: no witnesses are handed out
            return None
        return self._witnesses.assign(tx, host_id, ring, epoch)

    async def _ring(self) -> list[HostId]:
        """The up hosts' ids, sorted (the witnesses' ring), read again only after a host write
        that can change them, and then by their ids alone: while hundreds of hosts register,
        each registration changes them, and reading every host whole each time made a
        thousand registrations read a million host records. Who comes while they are read
        waits for that read."""
        if self._ring_seen is not None and self._ring_seen[0] == self._db.feed.hosts_version:
            return self._ring_seen[1]
        async with self._ring_reading:
            version = self._db.feed.hosts_version  # read first: a later write makes it newer
            if self._ring_seen is None or self._ring_seen[0] != version:
                ids = await self._db.read(lambda tx: tx.hosts.up_ids())
                self._ring_seen = (version, ids)
            return self._ring_seen[1]

    async def _own_host(self, caller: Principal, host_id: int) -> Host:
        require_role(caller, Role.node, doing="reporting as a node")

        def check(tx: Transaction) -> Host:
            host = tx.hosts.get(HostId(host_id))
            _check_owner(tx, host.id, caller)
            return host

        return await self._db.read(check)

    async def renew(
        self,
        caller: Principal,
        host_id: int,
        key: ReportKey,
        *,
        load: float | None,
        fenced: bool,
        underlay: str | None,
    ) -> Acknowledged | None:
        """Answer a heartbeat of ``key`` (``domain.nodes.report_key``) as a renewal when it
        says nothing new (``book.py``); ``None`` when it must go the whole way
        (``heartbeat``). The node API's front-end calls this before it converts the report."""
        require_role(caller, Role.node, doing="reporting as a node")
        hid = HostId(host_id)
        entry = None if fenced else self._book.quick(hid, caller.user_id, key)
        if entry is None or not same_ring(await self._ring(), hid, entry.examined, entry.short):
            return None
        now = self._clock.now()
        if not await self._renewals.renew(Renewal(hid, now, load, self._lease(now))):
            return None  # stored down meanwhile
        self._confirmations.confirm(hid, now)
        self.renewed += 1
        return await self._reply(hid, entry.state, entry.witnesses, underlay)

    async def heartbeat(self, caller: Principal, host_id: int, body: Heartbeat) -> Acknowledged:
        """A heartbeat: a renewal when it says nothing new (``renew``), else the whole way."""
        key = heartbeat_key(body)
        fenced = bool(body.fenced)
        ack = await self.renew(
            caller, host_id, key, load=body.load, fenced=fenced, underlay=body.underlay
        )
        if ack is not None:
            return ack
        self.full += 1
        return await self._report(caller, HostId(host_id), body)

    async def _report(self, caller: Principal, hid: HostId, body: Heartbeat) -> Acknowledged:
        """A heartbeat the whole way: one write checks the host is the caller's, handles what
        it fenced or lost (``ReportedHosts.on_report``) with the host as stored then, chooses
        its witnesses and writes the host; a second reconciles its VMs."""
        mark = self._book.mark(hid)
        now = self._clock.now()
        ring = await self._ring()
        reported: set[int] = {r.instance.id for r in body.vms}

        def run(tx: Transaction) -> tuple[Host, Host, _Witnesses, list[Instance]]:
            host = tx.hosts.lock(hid)
            _check_owner(tx, hid, caller)
            moved = self._reported.on_report(tx, host, reported, body.fenced, now)
            witnesses = self._assign(tx, hid, ring, body.witness_epoch)
            updated = tx.hosts.update(
                hid,
                up=True,
                decayed=False,
                load=body.load,
                memory=body.memory,
                cores=body.cores,
                last_heartbeat=now,
                lease_expires=self._lease(now),
                config=config_with(host, body.underlay),
            )
            return host, updated, witnesses, moved

        before, host, witnesses, moved = await self._db.write(run, reporting=hid)
        self._book.forget(hid)  # (not before: another node's report of it would drop it)
        await self._reported.after_report(before, moved, bool(body.fenced))
        await self._hub.publish(FirewallReported(hid, body.firewall))
        if not before.up:
            log.info("host %s is up again", host.name)
        settled, on_host = await self._reconcile(hid, body.vms)
        self._confirmations.confirm(hid, now)
        if settled and not moved and not body.fenced:
            self._book.settle(
                hid,
                user_id=caller.user_id,
                state=host.state,
                beat=body,
                witnesses=witnesses,
                instances=on_host,
                mark=mark,
            )
        witness_set = witnesses[0] if witnesses else None
        return await self._reply(hid, host.state, witness_set, body.underlay)

    async def _reply(
        self, hid: HostId, state: HostState, witnesses: WitnessSet | None, underlay: str | None
    ) -> Acknowledged:
        return Acknowledged(
            host_id=hid,
            state=state.name,
            up=True,
            lease_time=self._rules.host_lease,
            peers=await self._peers(hid) if underlay else None,
            witnesses=witnesses,
        )

    async def _peers(self, host_id: HostId) -> tuple[str, ...]:
        """The other up hosts' underlay addresses (``underlay.py``), for a node that has one."""
        return tuple(peers_of(await self._hosts(), host_id))

    async def _hosts(self) -> list[Host]:
        """Every host, read again only after a host write that can change them (the change
        feed's ``hosts_version``), not on every heartbeat of every host."""
        version = self._db.feed.hosts_version  # read first: a later write only makes it newer
        if self._hosts_seen is None or self._hosts_seen[0] != version:
            hosts = await self._db.read(lambda tx: tx.hosts.list())
            self._hosts_seen = (version, hosts)
        return self._hosts_seen[1]

    def _lease(self, now: datetime) -> datetime | None:
        """Until when the node may run its VMs unheard (ADR 0010); the node counts the same
        span from before it sent, so its own deadline comes first."""
        if self._rules.host_lease <= 0:
            return None
        return now + timedelta(seconds=self._rules.host_lease)

    async def events(self, caller: Principal, host_id: int, events: Sequence[NodeEvent]) -> int:
        """Apply a node's events in order; how many (all of them)."""
        host = await self._own_host(caller, host_id)
        for event in events:
            await self._apply_event(host, event)
        return len(events)

    async def _apply_event(self, host: Host, event: NodeEvent) -> None:
        action = EVENT_ACTIONS.get(event.kind)
        now = self._clock.now()

        def run(tx: Transaction) -> Instance | None:
            tx.events.add(
                event.instance_id,
                event.kind,
                f"on {host.name}: {event.detail}".rstrip(": "),
                now=now,
            )
            try:
                inst = tx.instances.get(event.instance_id)
            except NotFound:
                return None
            if action is None or inst.host_id != host.id:
                return None
            if (inst.state, action) in INSTANCE_TRANSITIONS:
                _apply(
                    tx,
                    inst,
                    Decision(inst.id, inst.state, action, vm_id=event.vm_id, note=_note(event)),
                    now,
                )
                return inst
            return None

        before = await self._db.write(run)
        if before is None and event.kind == "suspended":
            await self._orphaned_suspend(event)
        if before is not None and action in (Action.start_failed, Action.exited):
            await self._hub.publish(VmStopped(before, event.detail or event.kind))

    async def _orphaned_suspend(self, event: NodeEvent) -> None:
        """A suspend the node finished for an instance that no longer waits for it (destroyed
        meanwhile, say, while the node manager was restarting): its file can serve nobody. One
        the instance still may use (a duplicate event of a Suspended one) is kept."""
        iid = event.instance_id
        try:
            inst = await self._db.read(lambda tx: tx.instances.get(iid))
        except NotFound:
            inst = None
        if inst is None or not may_hold_a_file(inst):
            await self._suspends.discard_name(iid, event.detail)

    async def _reconcile(
        self, host_id: HostId, reports: Sequence[VmReport]
    ) -> tuple[bool, list[InstanceId]]:
        """Bring the host's instances in line with its report; whether that left nothing to
        do later (no instance waiting, no stranger, no race lost: ``book.py``), and the ids of
        the instances stored on the host."""
        now = self._clock.now()
        seen = [
            Seen(r.instance.id, r.vm_id, Observed(r.state))
            for r in reports
            if r.state in Observed._value2member_map_
        ]
        rules = self._rules

        def run(tx: Transaction) -> tuple[list[InstanceId], list[InstanceId], bool, list[Instance]]:
            stored = tx.instances.find(InstanceFilter(host_id=host_id, states=_RESIDENT))
            decisions, strangers = plan(
                stored, seen, now=now, grace=rules.grace, awaited=self._awaited
            )
            for decision in decisions:
                current = next((i for i in stored if i.id == decision.instance_id), None)
                if current is not None:
                    _apply(tx, current, decision, now)
            verdicts = [
                (s.seen.instance_id, _stranger(tx, host_id, s.seen, now)) for s in strangers
            ]
            calm = not strangers and not any(
                waiting(i, now=now, grace=rules.grace, awaited=self._awaited) for i in stored
            )
            return (
                [i for i, v in verdicts if v == "fence"],
                [i for i, v in verdicts if v == "adopt"],
                calm,
                stored,
            )

        try:
            fence, adopt, calm, stored = await self._db.write(run, reporting=host_id)
        except StateConflict:
            log.info(
                "a report about host %s raced another change; the next one settles it", host_id
            )
            return False, []
        await self._fence(host_id, [r for r in reports if r.instance.id in fence])
        for report in reports:
            if report.instance.id in adopt:
                await self._adopt(host_id, report)
        return calm, [i.id for i in stored]

    async def _adopt(self, host_id: HostId, report: VmReport) -> None:
        """Take into the store a VM its host runs that this cluster's store lost."""
        now = self._clock.now()
        inst = replace(
            report.instance,
            vm_id=report.vm_id,
            host_id=host_id,
            state=InstanceState.Paused if report.state == "paused" else InstanceState.Running,
        )

        def run(tx: Transaction) -> None:
            tx.instances.adopt(inst, unique_name=not self._rules.allow_duplicate_names, now=now)
            tx.events.add(
                inst.id,
                "adopted",
                f"found running on host {host_id}, unknown to the store; taken in",
                now=now,
            )

        try:
            await self._db.write(run)
        except TashiError as exc:
            log.warning(
                "cannot adopt the VM of instance %s on host %s: %s", inst.id, host_id, exc.message
            )

    async def _fence(self, host_id: HostId, reports: list[VmReport]) -> None:
        """Destroy VMs that must not run on this host (they run elsewhere, or were removed)."""
        if not reports:
            return
        host = await self._db.read(lambda tx: tx.hosts.get(host_id))
        for report in reports:
            try:
                await self._nodes.destroy(host, replace(report.instance, vm_id=report.vm_id))
            except TashiError as exc:
                log.warning(
                    "could not stop the stray VM of instance %s on %s: %s",
                    report.instance.id,
                    host.name,
                    exc.message,
                )


def _check_owner(tx: Transaction, host_id: HostId, caller: Principal) -> None:
    link = tx.hosts.link(host_id)
    if link is None or link.user_id != caller.user_id:
        raise NotFound(f"host {host_id} is not registered by this node")


def _apply(tx: Transaction, inst: Instance, decision: Decision, now: datetime) -> None:
    """Carry out one decision with a compare-and-swap; record it in the history."""
    target = next_state(inst.state, decision.action)
    if target is InstanceState.Exited:
        tx.instances.remove(inst.id, decision.expected)
    else:
        leaves_host = target in OFF_HOST
        restored = inst.state is InstanceState.Resuming and target is InstanceState.Running
        changes = InstanceChanges(
            vm_id=decision.vm_id,
            clear_host=leaves_host,
            clear_vm=leaves_host,
            reason=decision.note if target is InstanceState.Held else None,
            # The restore is done and the node deleted the file: start from the image hereafter.
            hints=without_resume(inst.hints) if restored else None,
        )
        tx.instances.transition(inst.id, decision.expected, target, now=now, changes=changes)
    message = f"{inst.state.name} -> {target.name}"
    tx.events.add(
        inst.id,
        decision.action.value,
        f"{message}: {decision.note}" if decision.note else message,
        now=now,
    )


def _note(event: NodeEvent) -> str:
    """What the history (and, for a failed start, the Held reason) says of a node's event."""
    if event.detail or EVENT_ACTIONS.get(event.kind) is not Action.start_failed:
        return event.detail
    return "its node reported that it failed, without saying why"


def _stranger(tx: Transaction, host_id: HostId, seen: Seen, now: datetime) -> str:
    """What to do with a VM the store does not place on this host: ``fence`` it when the
    instance runs elsewhere (it must never run twice) or was removed (its history says so);
    ``keep`` the target of a migration in flight; ``adopt`` a VM whose instance the store has
    no trace of (the store lost it: restored from an old backup, say)."""
    try:
        inst = tx.instances.get(seen.instance_id)
    except NotFound:
        if tx.events.list(seen.instance_id, limit=1):
            message = f"a VM of this removed instance still ran on host {host_id}"
            tx.events.add(seen.instance_id, "fenced", message, now=now)
            return "fence"
        return "adopt"
    if inst.state in (InstanceState.MigratePrep, InstanceState.MigrateTrans):
        return "keep"
    message = f"a second VM of it ran on host {host_id}; stopped it"
    tx.events.add(inst.id, "fenced", message, now=now)
    return "fence"
