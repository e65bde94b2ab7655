"""Helpers of the policies that migrate running VMs (``balanced``, ``consolidated``).

Moves are proposed only when the cluster is quiet — nothing waiting for a host and no
migration under way — and a few at a time, so that the scheduler never starts a storm of
migrations and always sees the result of one round before planning the next.
"""

from __future__ import annotations

from collections.abc import Iterator

from tashi.scheduler.snapshot import Request, Running, Snapshot

MIGRATING = frozenset({"MigratePrep", "MigrateTrans"})


def quiet(snapshot: Snapshot) -> bool:
    return not snapshot.pending and not any(r.state in MIGRATING for r in snapshot.placed)


def by_host(snapshot: Snapshot) -> dict[int, list[Running]]:
    """Placed instances per host position."""
    out: dict[int, list[Running]] = {}
    for vm in snapshot.placed:
        pos = snapshot.index.get(vm.host_id)
        if pos is not None:
            out.setdefault(pos, []).append(vm)
    return out


def movable(vms: list[Running]) -> bool:
    return bool(vms) and all(vm.state == "Running" for vm in vms)


def as_request(vm: Running) -> Request:
    return Request(id=vm.id, name=vm.name, user_id=-1, memory=vm.memory, cores=vm.cores)


def sources(snapshot: Snapshot, vms: dict[int, list[Running]]) -> Iterator[int]:
    for pos, host in enumerate(snapshot.hosts):
        if host.usable and movable(vms.get(pos, [])):
            yield pos
