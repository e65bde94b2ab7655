"""Moving an instance a lost or fenced host ran back to Pending, to be started elsewhere.

``ha.py`` decides *when* (the host's lease has surely run out, or the host came back without
the VM); this module says *how*: the instance leaves its host and VM id, keeps a reason a user
can read, and gets a ``rescheduled`` line in its history. The scheduler then places it like any
Pending instance, and alone (ADR 0009): it ran before, so it keeps (or gets) a start token
(``domain/hints.py``) and never waits for, nor drags down, the rest of its group.

It starts afresh from its image (ADR 0010): a resume source left from an earlier ``resumeVm``
is dropped. After the restore finished, the node manager deleted that file ("there is no suspend
file", and a group torn down again and again, issue 14); had it not finished, the VM may still
have run on the lost host, and its memory image would no longer match its disks.
"""

from __future__ import annotations

from datetime import datetime

from tashi.domain.hints import placed_alone, resume_source, without_resume
from tashi.domain.models import Host, Instance
from tashi.domain.states import Action, next_state
from tashi.storage.contract import InstanceChanges, Transaction

KIND = "rescheduled"

#: Why a host's instances go back to Pending: (reason, what the history says of the host).
_CAUSES = {
    "lost": ("was lost and its lease ran out", "was lost"),
    "fenced": ("stopped it when its lease ran out", "stopped it itself (self-fence)"),
    "crashed": ("came back without it", "came back without it (it died with the host)"),
    "vanished": (
        "and the migration's target both lack it",
        "and the migration's target both lack it (lost in the move)",
    ),
}


def reschedule(tx: Transaction, inst: Instance, host: Host, now: datetime, cause: str) -> Instance:
    reason, how = _CAUSES[cause]
    stale = resume_source(inst.hints)
    kept = without_resume(inst.hints)
    changes = InstanceChanges(
        clear_host=True,
        clear_vm=True,
        reason=f"restarted elsewhere: host {host.name} {reason}",
        hints=placed_alone(inst.hints if kept is None else kept),
    )
    target = next_state(inst.state, Action.reschedule)
    moved = tx.instances.transition(inst.id, inst.state, target, now=now, changes=changes)
    expired = cause in ("lost", "fenced") and host.lease_expires is not None
    lease = f"; its lease ran out at {host.lease_expires:%H:%M:%S}" if expired else ""
    unused = f" (its old suspend file {stale} is not used)" if stale else ""
    tx.events.add(
        inst.id,
        KIND,
        f"Orphaned -> Pending: host {host.name} {how}{lease}; the scheduler starts it again"
        f" elsewhere, from its image{unused}",
        now=now,
    )
    return moved
