"""Domain records -> wire dictionaries (``tashi.api.schemas`` shapes).

Plain dicts serialised by orjson rather than pydantic models: listing 10,000 instances must stay
fast. The ``response_model`` of each route still documents the shape in OpenAPI, and the tests
validate real responses against the schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tashi.domain.ids import HostId
from tashi.domain.models import Host, HostReport, Image, Instance, Network, Usage, User
from tashi.domain.states import ON_HOST, InstanceState

Json = dict[str, Any]


def instance(
    inst: Instance, names: Mapping[int, str], reports: Mapping[HostId, HostReport]
) -> Json:
    """``reports``: of the instance's host (``HostService.reports``); an instance on a host
    that has not reported since the cluster manager started is ``confirmed: false``."""
    report = reports.get(inst.host_id) if inst.host_id is not None else None
    on_host = inst.state in ON_HOST
    return {
        "id": inst.id,
        "name": inst.name,
        "userId": inst.user_id,
        "user": names.get(inst.user_id, str(inst.user_id)),
        "state": InstanceState(inst.state).name,
        "hostId": inst.host_id,
        "vmId": inst.vm_id,
        "cores": inst.cores,
        "memory": inst.memory,
        "cpuShare": inst.cpu_share,
        "disks": [{"uri": d.uri, "persistent": d.persistent, "copy": d.copy} for d in inst.disks],
        "nics": [{"network": n.network, "mac": n.mac, "ip": n.ip} for n in inst.nics],
        "hints": dict(inst.hints),
        "groupName": inst.group_name,
        "reason": inst.reason,
        "createdAt": inst.created_at,
        "stateSince": inst.state_since,
        "confirmed": not on_host or (report is not None and report.confirmed),
        "lastReport": report.at if report is not None and on_host else None,
    }


def host(h: Host, report: HostReport, usage: Usage | None = None) -> Json:
    used = usage or Usage()
    return {
        "id": h.id,
        "name": h.name,
        "up": h.up,
        "decayed": h.decayed,
        "state": h.state.name,
        "memory": h.memory,
        "cores": h.cores,
        "cpuSpeed": h.cpu_speed,
        "version": h.version,
        "notes": h.notes,
        "reserved": list(h.reserved),
        "config": dict(h.config),
        "lastHeartbeat": h.last_heartbeat,
        "confirmed": report.confirmed,
        "load": h.load,
        "usedMemory": used.memory,
        "usedCores": used.cores,
        "instances": used.instances,
    }


def user(u: User) -> Json:
    return {
        "id": u.id,
        "name": u.name,
        "role": u.role.value,
        "priority": u.priority,
        "createdAt": u.created_at,
    }


def network(n: Network, default: int) -> Json:
    return {"id": n.id, "name": n.name, "default": n.id == default}


def image(index: int, img: Image) -> Json:
    return {
        "id": index,
        "imageName": img.name,
        "imageSize": img.size,
        "format": img.format,
        "virtualSize": img.virtual_size,
    }
