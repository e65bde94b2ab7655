"""What EC2's ModifyInstanceAttribute changes on an instance: its size while it is stopped
(``instanceType``), and Tashi's own hints that hold what it was launched with (``userData``,
``disableApiTermination``: ``domain/launches.py``).

Saved by a compare-and-swap of the instance's state onto itself; an instance whose state
changed since it was read is read again and the change made again (at most ``ATTEMPTS`` times),
so the change never undoes a state change or loses one.
"""

from __future__ import annotations

from collections.abc import Mapping

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.auth import require_owner
from tashi.clustermanager.database import Database
from tashi.domain import validation
from tashi.domain.clock import Clock
from tashi.domain.errors import InvalidInput, InvalidState, StateConflict
from tashi.domain.models import Instance, Principal
from tashi.domain.states import InstanceState
from tashi.domain.validation import Limits
from tashi.storage.contract import InstanceChanges, Transaction

ATTEMPTS = 5


class AttributeService:
    def __init__(self, db: Database, clock: Clock, limits: Limits) -> None:
        self._db = db
        self._clock = clock
        self._limits = limits

    async def modify(
        self,
        caller: Principal,
        ref: str,
        *,
        own: Mapping[str, str | None] | None = None,
        size: tuple[int, int] | None = None,
    ) -> Instance:
        """Set (or, for ``None``, remove) Tashi's own hints ``own`` (names starting ``__``)
        and, for a Stopped instance only, the ``size`` (cores, memory in MB)."""
        own = dict(own or {})
        if any(not k.startswith("__") for k in own):
            raise InvalidInput("only Tashi's own hints ('__…') are changed here")
        if size is not None:
            validation.cores(size[0], self._limits)
            validation.memory(size[1], self._limits)
        for attempt in range(ATTEMPTS):
            try:
                return await self._db.write(lambda tx: self._change(tx, caller, ref, own, size))
            except StateConflict:
                if attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _change(
        self,
        tx: Transaction,
        caller: Principal,
        ref: str,
        own: Mapping[str, str | None],
        size: tuple[int, int] | None,
    ) -> Instance:
        inst = refs.instance(tx, ref)
        require_owner(caller, inst.user_id, "changing another user's instance")
        if size is not None and inst.state is not InstanceState.Stopped:
            raise InvalidState(
                f"{inst.name!r} is {inst.state.name}: its size changes only while it is Stopped"
            )
        hints = {k: v for k, v in inst.hints.items() if k not in own}
        hints.update({k: v for k, v in own.items() if v is not None})
        changes = InstanceChanges(
            hints=hints,
            cores=size[0] if size else None,
            memory=size[1] if size else None,
        )
        now = self._clock.now()
        return tx.instances.transition(inst.id, inst.state, inst.state, now=now, changes=changes)
