"""The JSON documents the XMPP publisher sends: one per event, and the VM layout.

Every document is a JSON object with ``"type"`` (what happened), ``"seq"`` (1, 2, ... from the
cluster manager's start: a gap means documents were dropped while the XMPP server was away),
``"at"`` (UTC, ISO 8601) and the event's own fields; docs/xmpp.md lists them. Pure functions of
the hub's events (``clustermanager.events``) and the domain's records.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tashi.clustermanager.events import (
    HostDown,
    HostUp,
    InstanceAdapted,
    InstanceStateChanged,
    StartFailed,
    VmStopped,
)
from tashi.domain.models import Host, Instance
from tashi.domain.states import InstanceState

Document = dict[str, Any]

#: the instance event types, by (previous, current) state where it matters
CREATED = "instance.created"
MIGRATED = "instance.migrated"
DESTROYED = "instance.destroyed"
STATE = "instance.state"


def instance(vm: Instance) -> Document:
    return {
        "id": int(vm.id),
        "name": vm.name,
        "userId": int(vm.user_id),
        "state": vm.state.name,
        "hostId": None if vm.host_id is None else int(vm.host_id),
        "cores": vm.cores,
        "memory": vm.memory,
        "cpuShare": vm.cpu_share,
    }


def host(machine: Host) -> Document:
    return {
        "id": int(machine.id),
        "name": machine.name,
        "up": machine.up,
        "state": machine.state.name,
        "memory": machine.memory,
        "cores": machine.cores,
    }


def _about(vm: Instance) -> Document:
    return {"instanceId": int(vm.id), "instance": instance(vm)}


def instance_type(event: InstanceStateChanged) -> str:
    if event.previous is None:
        return CREATED
    if event.current is InstanceState.Exited:
        return DESTROYED
    if event.previous is InstanceState.MigrateTrans and event.current is InstanceState.Running:
        return MIGRATED
    return STATE


def of_event(event: object) -> Document | None:
    """The document of one hub event (``None`` for an event the publisher does not send)."""
    match event:
        case InstanceStateChanged():
            out: Document = {
                "type": instance_type(event),
                "instanceId": int(event.instance_id),
                "previous": None if event.previous is None else event.previous.name,
                "current": event.current.name,
            }
            if event.instance is not None:
                out["instance"] = instance(event.instance)
            return out
        case HostUp(host=machine):
            return {"type": "host.up", "host": host(machine)}
        case HostDown(host=machine):
            return {"type": "host.down", "host": host(machine)}
        case StartFailed(instance=vm, why=why):
            return {"type": "instance.startFailed", **_about(vm), "reason": why}
        case VmStopped(instance=vm, why=why):
            return {"type": "instance.stopped", **_about(vm), "reason": why}
        case InstanceAdapted(instance=vm, changes=changes):
            return {"type": "instance.adapted", **_about(vm), "changes": dict(changes)}
    return None


def layout(hosts: Sequence[Host], instances: Sequence[Instance]) -> Document:
    """getVmLayout as a document: each host with the instances on it, then the unplaced."""
    by_host: dict[int, list[Document]] = {}
    unplaced: list[Document] = []
    for vm in sorted(instances, key=lambda i: i.id):
        if vm.host_id is None:
            unplaced.append(instance(vm))
        else:
            by_host.setdefault(int(vm.host_id), []).append(instance(vm))
    return {
        "type": "layout",
        "hosts": [
            {**host(h), "instances": by_host.get(int(h.id), [])}
            for h in sorted(hosts, key=lambda h: h.id)
        ],
        "unplaced": unplaced,
    }


def stamped(document: Document, seq: int, at: datetime) -> Document:
    return {"type": document["type"], "seq": seq, "at": at.isoformat(), **document}
