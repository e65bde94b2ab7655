"""``createVm --wait`` / ``createMany --wait``: follow new instances until they all run.

One line per change (``web-1: Pending -> Activating on node2``) goes to ``say`` as it is seen.
The wait ends when every instance is Running (no errors), or when one cannot get there: Held
(the reason says why: no room, its group was torn down, its start failed), removed, or still
not Running after ``timeout`` seconds. The instances are read by id every ``every`` seconds; a
scheduler places within a second or two, so a quicker poll would only load the cluster manager.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tashi.api.schemas import InstanceOut
from tashi.client.sdk import TashiClient
from tashi.domain.errors import InvalidState, NotFound, TashiError, Unavailable


@dataclass(frozen=True, slots=True)
class Waited:
    instances: list[InstanceOut]  # as last seen (removed ones left out)
    errors: list[TashiError]  # why some did not reach Running; empty: all run


def _line(before: InstanceOut | None, now: InstanceOut, hosts: dict[int, str]) -> str:
    where = f" on {hosts.get(now.hostId, now.hostId)}" if now.hostId is not None else ""
    start = f"{before.state} -> " if before is not None else ""
    why = f": {now.reason}" if now.reason and now.state == "Held" else ""
    return f"{now.name}: {start}{now.state}{where}{why}"


def wait_running(
    client: TashiClient,
    created: Sequence[InstanceOut],
    *,
    say: Callable[[str], None],
    timeout: float,
    every: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited:
    hosts = {h.id: h.name for h in client.all_hosts()}
    seen: dict[int, InstanceOut | None] = {i.id: None for i in created}
    deadline = clock() + timeout
    while True:
        errors: list[TashiError] = []
        for iid, before in list(seen.items()):
            if before is not None and before.state == "Running":
                continue
            try:
                now = client.get_instance(iid)
            except NotFound:
                name = before.name if before is not None else str(iid)
                errors.append(NotFound(f"{name} was removed (see getInstanceHistory {iid})"))
                continue
            if before is None or (now.state, now.hostId, now.reason) != (
                before.state,
                before.hostId,
                before.reason,
            ):
                if now.hostId is not None and now.hostId not in hosts:
                    hosts = {h.id: h.name for h in client.all_hosts()}
                say(_line(before, now, hosts))
            seen[iid] = now
            if now.state == "Held":
                errors.append(InvalidState(f"{now.name} is Held: {now.reason or 'no reason'}"))
        current = [i for i in seen.values() if i is not None]
        if errors:
            return Waited(current, errors)
        if all(i.state == "Running" for i in current) and len(current) == len(seen):
            return Waited(current, [])
        if clock() >= deadline:
            late = [f"{i.name} ({i.state})" for i in current if i.state != "Running"]
            return Waited(
                current,
                [Unavailable(f"not Running after {timeout:g} s: {', '.join(late)}")],
            )
        sleep(every)
