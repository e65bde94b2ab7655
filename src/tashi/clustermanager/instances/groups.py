"""Groups, all or nothing (ADR 0009): ``activateGroup`` places every member in one transaction,
and a member that fails to start tears its group down — while the group is starting.

A group is the live instances of one owner sharing a ``group_name`` (``createMany`` makes one).
``activate_group`` takes the scheduler's choice of a host per member, locks those hosts in id
order, checks each claim with ``claims.check`` (the members moved earlier in the same unit count
on their host, since the unit sees its own writes) and moves every member, stamping them with
one start token (``domain/hints.py``); one refusal rolls all back. The members are then started
concurrently through the node gateway. ``teardown`` stops the VMs of the other members of that
start and holds every one with one reason. It runs on the event hub's ``StartFailed`` (a
member's start failed: ``start_failed``) and ``VmStopped`` (a member failed or exited while
its start is still under way: ``vm_stopped``), to which ``service.build_service`` subscribes
it. Once every member of a start has run, the members are independent: one that fails, exits
or is restarted by HA later (placed alone with ``activateVm``) leaves the others be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.auth import require_role
from tashi.clustermanager.database import Database
from tashi.clustermanager.events import StartFailed, VmStopped
from tashi.clustermanager.images.diskcopy import needs_copy
from tashi.clustermanager.instances import claims
from tashi.clustermanager.instances.membership import members, start_mates, still_starting, waiting
from tashi.clustermanager.instances.service import InstanceService
from tashi.domain.clock import Clock
from tashi.domain.errors import InvalidInput, TashiError
from tashi.domain.hints import activation, new_start, start_of, with_start, without_start
from tashi.domain.ids import HostId, UserId
from tashi.domain.models import Host, Instance, Principal, Role
from tashi.domain.states import (
    INSTANCE_TRANSITIONS,
    ON_HOST,
    Action,
    InstanceState,
    next_state,
)
from tashi.storage.contract import InstanceChanges, Transaction

log = logging.getLogger(__name__)

KIND = "groupFailed"  # the history lines' kind
#: Who the cluster manager acts as when it destroys a member whose node did not confirm a stop.
SYSTEM = Principal(UserId(0), "tashi-cm", Role.admin)


class GroupService:
    def __init__(self, db: Database, instances: InstanceService, clock: Clock) -> None:
        self._db = db
        self._instances = instances
        self._clock = clock

    async def activate_group(
        self, caller: Principal, placements: Sequence[tuple[str, str]]
    ) -> list[Instance]:
        """``activateGroup``: every member of one group on its chosen host, or none."""
        require_role(caller, Role.agent, Role.admin, doing="activating instances")
        if not placements:
            raise InvalidInput("name at least one placement")
        rates = self._instances.rules.over_rates
        now = self._clock.now()

        token = new_start()  # the members' shared start (domain/hints.py)

        def place(tx: Transaction) -> list[tuple[Instance, Host]]:
            chosen = [(refs.instance(tx, i), refs.host(tx, h)) for i, h in placements]
            _check_complete(tx, [inst for inst, _ in chosen])
            for host_id in sorted({host.id for _, host in chosen}):
                tx.hosts.lock(host_id)
            placed = []
            for inst, host in chosen:
                claims.check(tx, inst, host, rates, self._instances.incoming(host.id, inst.id))
                action = activation(inst.hints)
                target = next_state(inst.state, action)
                changes = InstanceChanges(
                    host_id=host.id, clear_reason=True, hints=with_start(inst.hints, token)
                )
                moved = tx.instances.transition(
                    inst.id, inst.state, target, now=now, changes=changes
                )
                tx.events.add(
                    inst.id, action.value, f"placed on {host.name} with its group", now=now
                )
                placed.append((moved, host))
            return placed

        placed = await self._db.write(place)
        results = await asyncio.gather(
            *(self._instances.start_on(inst, host) for inst, host in placed),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, TashiError):
                raise failure
        if failures:
            raise failures[0]
        return [r for r in results if isinstance(r, Instance)]

    async def start_failed(self, event: StartFailed) -> None:
        """A node did not start an instance: a grouped one's start is torn down."""
        if event.instance.group_name is not None:
            await self.teardown(event.instance, event.why)

    async def vm_stopped(self, event: VmStopped) -> None:
        """A node reports that a VM failed or exited: see ``member_stopped``."""
        if event.instance.group_name:
            await self.member_stopped(event.instance, event.why)

    async def member_stopped(self, inst: Instance, why: str) -> None:
        """The node reports that ``inst`` (as it was before the report) failed or exited: if
        the start it was placed by is still under way, that is a failed start and the members
        of that start are torn down. A member of a group that started before is on its own."""
        mates = await self._db.read(lambda tx: start_mates(tx, inst))
        others = [i for i in mates if i.id != inst.id]
        if others and still_starting([inst, *others]):
            await self.teardown(inst, why)

    async def teardown(self, failed: Instance, why: str) -> None:
        """``failed`` did not start: stop the VMs of the members placed with it (its start
        token's bearers) and hold every one with the reason. Nothing to do for an instance
        placed alone (``activateVm``, a group of one, a member HA restarted)."""
        group = await self._db.read(lambda tx: start_mates(tx, failed))
        if all(i.id == failed.id for i in group):
            return
        reason = f"group {failed.group_name} torn down: {failed.name} failed to start: {why}"
        log.warning("%s", reason)
        for member in group:
            try:
                await self._hold(member, reason)
            except TashiError as exc:
                log.warning("tearing down group %s: %s: %s", failed.group_name, member.name, exc)

    async def _hold(self, member: Instance, reason: str) -> None:
        inst = await self._db.read(lambda tx: tx.instances.get(member.id))
        if inst.state is not InstanceState.Held:
            if (inst.state, Action.group_failed) not in INSTANCE_TRANSITIONS:
                return  # shutting down, destroyed, suspended: nothing of it runs for the group
            if inst.state in ON_HOST and inst.host_id is not None:
                host_id: HostId = inst.host_id
                host = await self._db.read(lambda tx: tx.hosts.get(host_id))
                try:
                    await self._instances.nodes.destroy(host, inst)
                except TashiError as exc:
                    # Its VM may still run: holding it would let it start twice. Destroy
                    # instead; the intent sticks and reconciliation finishes it.
                    log.warning(
                        "group teardown: %s did not stop (%s); destroying it", inst.name, exc
                    )
                    await self._instances.destroy_instance(SYSTEM, inst)
                    return
        await self._save(member, reason)

    async def _save(self, member: Instance, reason: str) -> None:
        """Hold ``member`` with ``reason`` as it is stored *now*: while its node stopped it,
        the answer to its start may have made it Running (the node waits for a start under way
        before it destroys), and a hold saved over the older read would fail and leave it
        Running with no VM. Nothing is saved if it was placed again since (another start
        token) or its owner took it elsewhere meanwhile (destroyed, shutting down)."""
        now = self._clock.now()
        token = start_of(member.hints)

        def save(tx: Transaction) -> None:
            inst = tx.instances.get(member.id)
            if start_of(inst.hints) != token:
                return
            target: InstanceState
            if inst.state is InstanceState.Held:
                target = InstanceState.Held
            elif (inst.state, Action.group_failed) in INSTANCE_TRANSITIONS:
                target = next_state(inst.state, Action.group_failed)
            else:
                return
            # Without its start token a held member waits to be placed with its group again.
            changes = InstanceChanges(
                reason=reason, clear_host=True, clear_vm=True, hints=without_start(inst.hints)
            )
            tx.instances.transition(inst.id, inst.state, target, now=now, changes=changes)
            tx.events.add(inst.id, KIND, reason, now=now)

        await self._db.write(save)


def _check_complete(tx: Transaction, chosen: list[Instance]) -> None:
    """The placements name every member of one group still waiting to be placed, each once."""
    first = chosen[0]
    ids = [i.id for i in chosen]
    if len(set(ids)) != len(ids):
        raise InvalidInput("an instance is named twice")
    for inst in chosen:
        if (inst.user_id, inst.group_name) != (first.user_id, first.group_name):
            raise InvalidInput(f"{inst.name!r} is not in group {first.group_name!r}")
        if needs_copy(inst):
            raise InvalidInput(
                f"{inst.name!r} has disks to copy first; activate it alone with activateVm"
            )
    if first.group_name is None and len(chosen) > 1:
        raise InvalidInput("instances without a group name are placed one by one")
    # Members placed before are not waiting for the group: running, on their way, or Pending
    # and Held again after they ran (HA restarted them, they were resumed) and placed alone.
    # Naming one here is allowed: it starts with the others, all or nothing.
    missing = [i.name for i in waiting(members(tx, first)) if i.id not in ids]
    if missing:
        raise InvalidInput(
            f"group {first.group_name!r} also has {', '.join(missing)}: place every member"
        )
