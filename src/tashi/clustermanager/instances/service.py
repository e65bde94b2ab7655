"""Instance operations: create, list, destroy, and the lifecycle verbs.

Each public method is one operation of the original Tashi (``createVm``, ``destroyVm``, …). It
authorises the caller (owners act on their instances; admins and the cluster's daemons on all),
checks the state table, and saves with compare-and-swap. Verbs that need a VM process go through
the node gateway (``nodes.py``) after those checks, so that without a node manager they fail
clearly and change nothing. Activating an instance whose disks ask for their own copy of a
template first makes the copies (``diskcopy.py``, state PreparingDisk).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.auth import require_admin, require_owner, require_role
from tashi.clustermanager.database import Database
from tashi.clustermanager.events import InstanceAdapted, StartFailed
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.clustermanager.images.diskcopy import DiskCopies, needs_copy
from tashi.clustermanager.images.service import ImageService
from tashi.clustermanager.instances import claims, membership
from tashi.clustermanager.instances.migration import (
    TARGET_HINT,
    LostHosts,
    Migrations,
    target_of,
    without_target,
)
from tashi.clustermanager.instances.specs import SpecRules, build_spec, many_names, settle_nics
from tashi.clustermanager.instances.suspends import SuspendArea, suspend_file
from tashi.domain import validation
from tashi.domain.clock import Clock
from tashi.domain.errors import (
    Forbidden,
    InvalidInput,
    InvalidState,
    NotFound,
    StateConflict,
    TashiError,
)
from tashi.domain.hints import (
    RESUME_SOURCE,
    activation,
    new_start,
    placed_alone,
    rebased,
    resume_source,
    with_start,
)
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import (
    DiskConfig,
    Host,
    Instance,
    InstanceEvent,
    InstanceSpec,
    Principal,
    Role,
    Usage,
)
from tashi.domain.operations import InstanceQuery, VmRequest
from tashi.domain.states import Action, InstanceState, next_state
from tashi.runtime.hub import EventHub
from tashi.storage.contract import InstanceChanges, Transaction

log = logging.getLogger(__name__)
DESTROY_ATTEMPTS = 3  # destroyVm reads again after a StateConflict before answering one

#: Changes a new instance (the n-th of a request) in the unit that stores it (``create_each``).
Also = Callable[[Transaction, Instance, int], Instance]


@dataclass(frozen=True, slots=True)
class InstanceRules:
    specs: SpecRules
    allow_duplicate_names: bool
    max_batch: int
    migrate_timeout: float = 300.0
    over_rates: claims.OverRates = field(default_factory=claims.OverRates)


class InstanceService:
    def __init__(
        self,
        db: Database,
        nodes: NodeGateway,
        clock: Clock,
        rules: InstanceRules,
        images: ImageService,
        suspends: SuspendArea,
        hub: EventHub,
    ) -> None:
        self._db = db
        self._hub = hub  # told of failed starts and adaptations (``events``)
        self._nodes = nodes
        self._clock = clock
        self._rules = rules
        self.rules = rules
        self.nodes = nodes
        #: Instances whose start (or restore) a node manager has been asked for and has not
        #: answered yet: node reports leave them to that answer (``reconcile.plan``).
        self.awaited: set[InstanceId] = set()
        self._migrations = Migrations(nodes, rules.migrate_timeout)
        self._disk_copies = DiskCopies(images)
        self._suspends = suspends

    # --- creating ---------------------------------------------------------------------

    def _owner(self, caller: Principal, request: VmRequest) -> UserId:
        require_role(caller, Role.user, Role.admin, doing="creating instances")
        if request.user_id is None or request.user_id == caller.user_id:
            return caller.user_id
        if not caller.is_admin:
            raise Forbidden("only an admin may create instances for another user")
        return UserId(request.user_id)

    async def create_vm(self, caller: Principal, request: VmRequest) -> Instance:
        """``createVm``: store a Pending instance; the scheduler places it."""
        owner = self._owner(caller, request)
        spec = build_spec(request, request.name, self._rules.specs)
        return (await self._insert(owner, [spec]))[0]

    async def create_many(
        self, caller: Principal, request: VmRequest, count: int
    ) -> list[Instance]:
        """``createMany``: ``count`` instances named ``<name>-NN``, all stored or none."""
        owner = self._owner(caller, request)
        if not 1 <= count <= self._rules.max_batch:
            raise InvalidInput(f"count must be between 1 and {self._rules.max_batch} (maxBatch)")
        if any(n.mac for n in request.nics or ()):
            raise InvalidInput("createMany gives every VM its own MACs; leave the MAC empty")
        if count > 1 and any(d.persistent and not d.copy for d in request.disks):
            raise InvalidInput(
                "a persistent disk is written by one VM only; createMany cannot share it"
            )
        validation.instance_name(request.name)
        first = build_spec(request, many_names(request.name, count)[0], self._rules.specs)
        group = request.group_name or request.name  # a createMany is one group (ADR 0009)
        specs = [
            replace(first, name=validation.instance_name(n), group_name=group)
            for n in many_names(request.name, count)
        ]
        return await self._insert(owner, specs)

    async def create_each(
        self,
        caller: Principal,
        requests: Sequence[VmRequest],
        group: str | None,
        *,
        also: Also | None = None,
    ) -> list[Instance]:
        """Instances of their own requests (their own disks, EC2's root volumes), in one group
        when ``group`` names one (started all or nothing, ADR 0009): all stored or none.
        ``also`` changes each new instance (the ``index``-th) in the unit that stores it,
        before anything can place it: EC2's volumes join its disks (``BlockDeviceMappings``)."""
        if not 1 <= len(requests) <= self._rules.max_batch:
            raise InvalidInput(f"between 1 and {self._rules.max_batch} instances (maxBatch)")
        owners = {self._owner(caller, r) for r in requests}
        if len(owners) != 1:
            raise InvalidInput("the instances of one request have one owner")
        specs = [
            replace(build_spec(r, r.name, self._rules.specs), group_name=group) for r in requests
        ]
        return await self._insert(owners.pop(), specs, also)

    async def _insert(
        self, owner: UserId, specs: list[InstanceSpec], also: Also | None = None
    ) -> list[Instance]:
        unique = not self._rules.allow_duplicate_names
        now = self._clock.now()

        def insert(tx: Transaction) -> list[Instance]:
            tx.users.get(owner)
            made = [
                tx.instances.add(owner, s, unique_name=unique, now=now)
                for s in settle_nics(tx, specs)
            ]
            return made if also is None else [also(tx, i, n) for n, i in enumerate(made)]

        return await self._db.write(insert)

    async def room(self, caller: Principal, cores: int, memory: int) -> int:
        """How many VMs of this size the hosts open to the caller could take now
        (``claims.room``)."""
        rates = self._rules.over_rates
        return await self._db.read(lambda tx: claims.room(tx, caller.user_id, cores, memory, rates))

    # --- reading ----------------------------------------------------------------------

    async def get(self, caller: Principal, ref: str) -> Instance:
        inst = await self._db.read(lambda tx: refs.instance(tx, ref))
        require_owner(caller, inst.user_id, "looking at another user's instance")
        return inst

    async def find(self, caller: Principal, query: InstanceQuery) -> list[Instance]:
        """``getInstances``: a user sees their own instances; admins and daemons see all."""
        return await self._db.read(lambda tx: tx.instances.find(refs.instances(tx, caller, query)))

    async def count(self, caller: Principal, query: InstanceQuery) -> int:
        """How many instances ``find`` would answer (its limit aside), none of them read."""
        return await self._db.read(lambda tx: tx.instances.count(refs.instances(tx, caller, query)))

    async def history(
        self, caller: Principal, ref: str, limit: int = 100, after: int | None = None
    ) -> list[InstanceEvent]:
        """What happened to an instance, oldest first: its newest ``limit`` events, or with
        ``after`` the ``limit`` events that follow that event id. A removed instance's history
        is readable by admins (by id), since its owner is no longer recorded."""
        try:
            iid = (await self.get(caller, ref)).id
        except NotFound:
            if not (caller.is_trusted and ref.strip().isdigit()):
                raise
            iid = InstanceId(int(ref))
        return await self._db.read(lambda tx: tx.events.list(iid, limit=limit, after_id=after))

    # --- destroying -------------------------------------------------------------------

    async def destroy_vm(
        self, caller: Principal, ref: str, *, force: bool = False
    ) -> Instance | None:
        """``destroyVm``: removes an unstarted instance at once, otherwise asks its node
        manager to kill it. Returns the instance as it now is, or ``None`` once removed.
        ``force`` (admin only) removes the record whatever its state. One that moved meanwhile
        (placed, held) is read again: its end was asked for, whatever state it reached."""
        for _ in range(DESTROY_ATTEMPTS - 1):
            with contextlib.suppress(StateConflict):
                return await self.destroy_instance(caller, await self.get(caller, ref), force=force)
        return await self.destroy_instance(caller, await self.get(caller, ref), force=force)

    async def destroy_instance(
        self, caller: Principal, inst: Instance, *, force: bool = False
    ) -> Instance | None:
        require_owner(caller, inst.user_id, "destroying another user's instance")
        if force:
            require_admin(caller, "force-destroying an instance")
            next_state(inst.state, Action.force_destroy)
            await self._kill_quietly(inst)
            await self._remove(inst, f"force-destroyed by {caller.name}")
            await self._suspends.discard_for(inst)
            return None
        target = next_state(inst.state, Action.destroy)
        if target is InstanceState.Exited:
            await self._remove(inst, f"destroyed by {caller.name} before it ran")
            await self._suspends.discard_for(inst)  # Suspended, or resumed and not yet placed
            return None
        # The intent sticks before the node is asked: if the node does not answer, the
        # instance stays Destroying and reconciliation finishes the job.
        dying = await self._move(inst, Action.destroy) if target is not inst.state else inst
        await self._nodes.destroy(await self._host_of(dying), dying)
        await self._remove(dying, f"destroyed by {caller.name}")
        await self._suspends.discard_for(inst)  # a restore cut short, a suspend in progress
        return None

    async def _remove(self, inst: Instance, message: str) -> None:
        """Remove the record and say so in its history, in one write: a VM of it that a node
        still reports (a heartbeat from before the destroy) is then fenced, not adopted."""
        now = self._clock.now()

        def run(tx: Transaction) -> None:
            tx.instances.remove(inst.id, inst.state)
            tx.events.add(inst.id, "destroyed", message, now=now)

        await self._db.write(run)

    async def _kill_quietly(self, inst: Instance) -> None:
        """Best effort for a force-destroy: the record goes whatever the node says."""
        if inst.host_id is None:
            return
        try:
            await self._nodes.destroy(await self._host_of(inst), inst)
        except TashiError as exc:
            log.warning("force-destroy of %s: its node did not confirm: %s", inst.name, exc)

    # --- lifecycle verbs that need a node manager -------------------------------------

    async def shutdown_vm(self, caller: Principal, ref: str) -> Instance:
        """``shutdownVm``: ACPI power-off; the record goes when the node reports the VM gone."""
        return await self.shutdown_instance(caller, await self.get(caller, ref))

    async def shutdown_instance(self, caller: Principal, inst: Instance) -> Instance:
        require_owner(caller, inst.user_id, "shutting down another user's instance")
        next_state(inst.state, Action.shutdown)
        await self._nodes.shutdown(await self._host_of(inst), inst)
        return await self._move(inst, Action.shutdown)

    async def pause_vm(self, caller: Principal, ref: str) -> Instance:
        inst = await self._checked(caller, ref, Action.pause, "pausing")
        return await self._two_step(
            inst, Action.pause, Action.paused, Action.pause_failed, self._nodes.pause
        )

    async def unpause_vm(self, caller: Principal, ref: str) -> Instance:
        inst = await self._checked(caller, ref, Action.unpause, "unpausing")
        return await self._two_step(
            inst, Action.unpause, Action.unpaused, Action.unpause_failed, self._nodes.unpause
        )

    async def _two_step(
        self,
        inst: Instance,
        begin: Action,
        done: Action,
        failed: Action,
        work: Callable[[Host, Instance], Awaitable[None]],
    ) -> Instance:
        host = await self._host_of(inst)
        moving = await self._move(inst, begin)
        try:
            await work(host, moving)
        except TashiError:
            await self._move(moving, failed)
            raise
        return await self._move(moving, done)

    async def suspend_vm(self, caller: Principal, ref: str) -> Instance:
        """``suspendVm``: the node saves the VM to the shared store's suspend area; the
        instance becomes Suspended (and is kept) when the node reports the save done."""
        inst = await self._checked(caller, ref, Action.suspend, "suspending")
        host = await self._host_of(inst)
        saving = await self._move(inst, Action.suspend)
        try:
            await self._nodes.suspend(host, saving, suspend_file(saving))
        except TashiError:
            await self._move(saving, Action.suspend_failed)
            raise
        return saving

    async def resume_vm(self, caller: Principal, ref: str) -> Instance:
        """``resumeVm``: a Suspended instance becomes Pending again, remembering its saved
        state; the scheduler places it (alone: it ran before) and the node manager restores
        it. The mark goes when the restore has finished (``nodereports``)."""
        inst = await self._checked(caller, ref, Action.resume, "resuming")
        hints = placed_alone({**inst.hints, RESUME_SOURCE: suspend_file(inst)})
        return await self._move(inst, Action.resume, hints=hints)

    async def stop_vm(self, caller: Principal, ref: str, *, force: bool = False) -> Instance:
        """EC2's StopInstances: power the guest off (``force``: pull the plug) and keep the
        instance, Stopped, with its disks, to start on any host later. Only an instance whose
        disks are all persistent may stop: an overlay lives on its host and would be lost."""
        inst = await self._checked(caller, ref, Action.stop, "stopping")
        local = [d.uri for d in inst.disks if not d.persistent]
        if local:
            raise InvalidState(
                f"{inst.name!r} has disks that are not persistent ({', '.join(local)}): they"
                " would be lost; shut it down or destroy it instead"
            )
        host = await self._host_of(inst)
        stopping = await self._move(inst, Action.stop)
        if force:
            await self._nodes.destroy(host, stopping)
            return await self._move(stopping, Action.exited, clear_host=True)
        await self._nodes.shutdown(host, stopping)  # Stopped once the node reports it gone
        return stopping

    async def start_vm(self, caller: Principal, ref: str) -> Instance:
        """EC2's StartInstances: a Stopped instance waits to be placed again (alone: it ran)."""
        inst = await self._checked(caller, ref, Action.start, "starting")
        return await self._move(inst, Action.start, hints=placed_alone(inst.hints))

    async def migrate_vm(self, caller: Principal, ref: str, target_ref: str) -> Instance:
        """``migrateVm``: live-migrate a Running instance to another host. Answers once the
        target is prepared (MigrateTrans); the transfer finishes in the background."""
        inst = await self._checked(caller, ref, Action.migrate, "migrating")
        target = await self._db.read(lambda tx: refs.host(tx, target_ref))
        if target.id == inst.host_id:
            raise InvalidInput(f"{inst.name!r} already runs on host {target.name!r}")
        source = await self._host_of(inst)
        self._migrations.begin(inst, target.id)
        try:
            preparing = await self._move(
                inst,
                Action.migrate,
                hints={**inst.hints, TARGET_HINT: str(target.id)},
                claim=target,
            )
            try:
                ticket = await self._nodes.prepare_incoming(target, preparing)
            except TashiError:
                await self._move(preparing, Action.migrate_failed, hints=without_target(preparing))
                raise
            moving = await self._move(preparing, Action.migrate_transfer)
        except BaseException:
            self._migrations.abandon(inst.id)
            raise
        self._migrations.start(moving, source, target, ticket, self._move, self._record)
        return moving

    def incoming(self, host: HostId, but: InstanceId | None = None) -> Usage:
        """What live migrations in flight bring to ``host`` (for claims on it)."""
        return self._migrations.incoming(host, but)

    async def settle_migration(self, inst: Instance, lost: LostHosts | None = None) -> bool:
        """A migration this process does not drive (its driver was lost in a restart): settle
        it from what the two hosts say (``Migrations.settle``). False when there is nothing to
        go on (no recorded target, or a host left the cluster): the caller's deadline decides."""
        if self._migrations.driving(inst.id):
            return True
        target_id = target_of(inst)
        if target_id is None or inst.host_id is None:
            return False
        source_id: HostId = inst.host_id
        try:
            source, target = await self._db.read(
                lambda tx: (tx.hosts.get(source_id), tx.hosts.get(target_id))
            )
        except NotFound:
            return False
        await self._migrations.settle(inst, source, target, self._move, self._record, lost)
        return True

    async def adapt_cpu_share(self, caller: Principal, ref: str, share: int) -> Instance:
        """SLA@SOI ``adaptCpuShare``: change a VM's relative CPU weight (its cgroup's
        cpu.shares) while it runs; also kept for its next start."""
        inst = await self.get(caller, ref)
        require_owner(caller, inst.user_id, "changing another user's instance")
        validation.cpu_share(share)
        if inst.host_id is not None and inst.state in (InstanceState.Running, InstanceState.Paused):
            await self._nodes.set_cpu_share(await self._host_of(inst), inst, share)
        now, changes = self._clock.now(), InstanceChanges(cpu_share=share)
        changed = await self._db.write(
            lambda tx: tx.instances.transition(
                inst.id, inst.state, inst.state, now=now, changes=changes
            )
        )
        await self._record(changed, "cpuShare", f"cpu share {inst.cpu_share} -> {share}")
        await self._hub.publish(InstanceAdapted(changed, {"cpuShare": share}))
        return changed

    async def _record(self, inst: Instance, kind: str, message: str) -> None:
        now = self._clock.now()
        await self._db.write(lambda tx: tx.events.add(inst.id, kind, message, now=now))

    async def vmm_call(self, caller: Principal, ref: str, arg: str) -> str:
        """``vmmSpecificCall``: ``op[:argument]`` (startVnc, stopVnc, changeCdrom:<image>,
        reset, console[:KB], list) passed to the VM's node manager."""
        inst = await self.get(caller, ref)
        if inst.state not in (InstanceState.Running, InstanceState.Paused):
            raise InvalidState(f"{inst.name!r} is {inst.state.name}; it must be Running or Paused")
        op, _, argument = arg.partition(":")
        return await self._nodes.vmm_call(await self._host_of(inst), inst, op, argument)

    async def activate_vm(self, caller: Principal, ref: str, host_ref: str) -> Instance:
        """``activateVm`` (the scheduler's call): claim room on a host for a Pending or Held
        instance and start it there, first making the copies its ``copy`` disks ask for
        (PreparingDisk, ``diskcopy.py``). The claim (``claims.py``) is checked in the
        transaction that moves the instance: a host without room answers
        ``InsufficientResources`` and nothing changes. If a copy fails or the node cannot start
        it, the instance is Held with the reason.

        Without copies, reading the instance and host, the claim and the move are one write
        unit (the claim's cost is mostly per transaction and per statement)."""
        require_role(caller, Role.agent, Role.admin, doing="activating instances")
        now = self._clock.now()
        rates = self._rules.over_rates
        token = new_start()  # a start of its own: its failure is nobody else's (hints.py)

        def stamped(inst: Instance) -> dict[str, str]:
            return with_start(inst.hints, token)

        def read_and_claim(tx: Transaction) -> tuple[Instance, Host, Instance | None]:
            inst, host = refs.instance(tx, ref), refs.host(tx, host_ref)
            membership.check_alone(tx, inst)
            action = activation(inst.hints)
            target = next_state(inst.state, action)
            if action is Action.activate and needs_copy(inst):
                claims.usable(host)  # before the copies; PreparingDisk claims (below)
                claims.admits(host, inst)
                return inst, host, None
            locked = claims.check(tx, inst, host, rates, self.incoming(host.id, inst.id))
            changes = InstanceChanges(host_id=host.id, clear_reason=True, hints=stamped(inst))
            moved = tx.instances.transition(inst.id, inst.state, target, now=now, changes=changes)
            return inst, locked, moved

        inst, host, starting = await self._db.write(read_and_claim)

        async def claim_and_move(i: Instance, act: Action | None, **fields: Any) -> Instance:
            first = act is Action.prepare_disk
            if first:
                fields.setdefault("hints", stamped(i))
            return await self._move(i, act, claim=host if first else None, **fields)

        if starting is None:
            starting = await self._disk_copies.prepare(caller, inst, host.id, claim_and_move)
        return await self.start_on(starting, host)

    async def start_on(self, starting: Instance, host: Host) -> Instance:
        """Ask ``host``'s node to start (or restore) an instance placed there; Running (or
        Resuming until the restore reports) once it runs. A failed start holds it with the
        reason (and a history line) and publishes ``StartFailed``, on which the members placed
        with it are torn down (``groups.GroupService.start_failed``)."""
        source = resume_source(starting.hints)
        self.awaited.add(starting.id)  # until the node's answer is stored
        try:
            try:
                if source:
                    vm_id = await self._nodes.resume(host, starting, source)
                    return await self._move(starting, None, vm_id=vm_id)
                vm_id = await self._nodes.instantiate(host, starting)
            except TashiError as exc:
                why = f"{'restoring' if source else 'starting'} it on {host.name} failed"
                await self._move(
                    starting,
                    Action.start_failed,
                    reason=f"{why}: {exc.message}",
                    clear_host=True,
                    event=(
                        Action.start_failed.value,
                        f"{starting.state.name} -> Held: {why}: {exc.message}",
                    ),
                )
                await self._hub.publish(StartFailed(starting, exc.message))
                raise
            return await self._move(starting, Action.started, vm_id=vm_id)
        finally:
            self.awaited.discard(starting.id)

    async def hold_vm(self, caller: Principal, ref: str, reason: str) -> Instance:
        """``holdVm`` (the scheduler's call): a Pending instance that cannot be placed now
        becomes Held with ``reason``, which getInstances shows; a Held one stays Held with the
        new reason. The history records a reason when it changes (a scheduler that retries
        with back-off repeats itself)."""
        require_role(caller, Role.agent, Role.admin, doing="holding instances")
        reason = reason.strip()
        if not reason:
            raise InvalidInput("a hold needs a reason")
        inst = await self.get(caller, ref)
        if inst.state is InstanceState.Held:
            if inst.reason == reason:
                return inst
            return await self._move(inst, None, reason=reason, event=("held", reason))
        return await self._move(inst, Action.hold, reason=reason, event=("held", reason))

    # --- helpers ----------------------------------------------------------------------

    async def _checked(self, caller: Principal, ref: str, action: Action, doing: str) -> Instance:
        inst = await self.get(caller, ref)
        require_owner(caller, inst.user_id, f"{doing} another user's instance")
        next_state(inst.state, action)
        return inst

    async def _host_of(self, inst: Instance) -> Host:
        if inst.host_id is None:
            raise InvalidState(f"{inst.name!r} is {inst.state.name} but has no host")
        host_id: HostId = inst.host_id
        return await self._db.read(lambda tx: tx.hosts.get(host_id))

    async def _move(
        self,
        inst: Instance,
        action: Action | None,
        *,
        hints: dict[str, str] | None = None,
        host_id: HostId | None = None,
        vm_id: int | None = None,
        reason: str | None = None,
        clear_host: bool = False,
        clear_reason: bool = False,
        disks: tuple[DiskConfig, ...] | None = None,
        event: tuple[str, str] | None = None,
        claim: Host | None = None,
    ) -> Instance:
        """Compare-and-swap ``inst`` from its state through ``action`` (``None``: same state,
        other fields only); ``event`` (kind, message) goes into its history in the same
        transaction, and ``claim`` names a host whose room is checked first (``claims.py``)."""
        target = inst.state if action is None else next_state(inst.state, action)
        now = self._clock.now()
        changes = InstanceChanges(
            hints=hints,
            host_id=host_id,
            vm_id=vm_id,
            reason=reason,
            clear_host=clear_host,
            clear_vm=clear_host,
            clear_reason=clear_reason,
            disks=disks,
        )

        rates = self._rules.over_rates

        def save(tx: Transaction) -> Instance:
            if claim is not None:
                claims.check(tx, inst, claim, rates, self.incoming(claim.id, inst.id))
            change = changes
            if hints is not None:  # over what was saved since ``inst`` was read (its tags)
                stored = tx.instances.get(inst.id).hints
                change = replace(changes, hints=rebased(inst.hints, hints, stored))
            saved = tx.instances.transition(inst.id, inst.state, target, now=now, changes=change)
            if event is not None:
                tx.events.add(inst.id, event[0], event[1], now=now)
            return saved

        return await self._db.write(save)
