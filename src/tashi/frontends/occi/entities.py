"""Tashi's records as OCCI entities: an instance is a ``compute``, each of its NICs a
``networkinterface`` link (with ``ipnetworkinterface``: the address Tashi assigned) to a
``network``, each of its disks a ``storagelink`` to a ``storage`` resource: the disk itself
(``/storage/<instance>-<n>``) or, for a volume, the volume (``/storage/<vol-id>``, its
resource in ``storageviews.py``; the link ``/link/storagelink/<instance>-<vol-id>``). A link
a compute was created with to a volume waits, ``inactive``, until the compute runs
(``PENDING``).

An ``Entity`` is what the renderings write; the functions here only read Tashi's records (no
service is called). Locations are paths (``/compute/7``); the renderings make them absolute
where a client needs to follow them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from tashi.domain.launches import tags as instance_tags
from tashi.domain.models import Image, Instance, Network
from tashi.domain.states import InstanceState as S
from tashi.domain.volumes import volume_of
from tashi.frontends.occi import categories as c
from tashi.frontends.occi.categories import Category
from tashi.frontends.occi.model import MIB_PER_GIB, Model, term_of
from tashi.frontends.occi.usermixins import carried

Value = str | int | float | bool

#: own hints (``__…``, kept by Tashi, never set by a caller) holding what OCCI was told
TITLE = "__occi.title"
SUMMARY = "__occi.summary"
OS_TPL = "__occi.os_tpl"
RESOURCE_TPL = "__occi.resource_tpl"
ROOT = "__occi.root"  # the root disk OCCI made for the instance, removed with it
#: own hints of a compute: the volumes it was created with, to attach once it runs
#: (``vol-…=/dev/vdb`` separated by spaces), and why those that could not be were not (JSON)
PENDING = "__occi.attach"
FAILED = "__occi.attach.failed"
#: the own hint of a compute keeping a storagelink's mountpoint (the volume id follows)
MOUNT = "__occi.mount."
#: own hints of a compute: the NICs its networkinterfaces made while it could take none (it
#: was starting, suspended, migrating …), to add once it can (``<network>/<mac>`` separated
#: by spaces), and why those that could not be were not (JSON, MAC -> why)
NICS = "__occi.nics"
NICS_FAILED = "__occi.nics.failed"
#: the volume's tags holding what OCCI was told (``Name`` is EC2's title too)
TITLE_TAG = "Name"
SUMMARY_TAG = "occi:summary"


#: Tashi's state -> occi.compute.state (GFD.224 §3.1: active, inactive, suspended, error)
STATE: Mapping[S, str] = {
    S.Running: "active",
    S.MigratePrep: "active",
    S.MigrateTrans: "active",
    S.Pausing: "active",
    S.Stopping: "active",  # inactive once the guest is off (Stopped)
    S.ShuttingDown: "active",
    S.Suspending: "active",
    S.Paused: "suspended",
    S.Suspended: "suspended",
    S.Unpausing: "suspended",
    S.Resuming: "suspended",
    S.Held: "error",
    S.Orphaned: "error",
}
#: states an instance no longer shows in: it is on its way out (its DELETE was answered)
GONE = (S.Destroying, S.Exited)


@dataclass(frozen=True, slots=True)
class Entity:
    """A resource or link as the renderings write it."""

    kind: Category
    id: str
    location: str
    attributes: Mapping[str, Value]
    mixins: tuple[Category, ...] = ()
    actions: tuple[Category, ...] = ()
    links: tuple[Entity, ...] = ()
    #: a link's ends: (location, kind type identifier)
    source: tuple[str, str] | None = None
    target: tuple[str, str] | None = None
    extra: Mapping[str, Value] = field(default_factory=dict)


def compute_state(inst: Instance) -> str:
    return STATE.get(inst.state, "inactive")


def compute_location(iid: int) -> str:
    return f"{c.COMPUTE.location}{iid}"


def _actions(inst: Instance) -> tuple[Category, ...]:
    """The actions that would change something now (GFD.229: rendered as action links)."""
    state = compute_state(inst)
    if state == "active":
        return (c.STOP, c.RESTART, c.SUSPEND)
    if state == "suspended":
        return (c.START, c.STOP)
    return (c.START,)


def compute(inst: Instance, model: Model) -> Entity:
    attrs: dict[str, Value] = {
        "occi.core.id": str(inst.id),
        "occi.core.title": inst.hints.get(TITLE, inst.name),
        "occi.compute.architecture": "x64",
        "occi.compute.cores": inst.cores,
        "occi.compute.hostname": inst.name,
        "occi.compute.share": inst.cpu_share,
        "occi.compute.memory": round(inst.memory / MIB_PER_GIB, 4),
        "occi.compute.state": compute_state(inst),
        "occi.compute.state.message": inst.state.name + (f": {inst.reason}" if inst.reason else ""),
    }
    if SUMMARY in inst.hints:
        attrs["occi.core.summary"] = inst.hints[SUMMARY]
    location = compute_location(inst.id)
    return Entity(
        c.COMPUTE,
        str(inst.id),
        location,
        attrs,
        mixins=templates(inst, model) + carried(instance_tags(inst.hints), model),
        actions=_actions(inst),
        links=compute_links(inst),
    )


def compute_links(inst: Instance) -> tuple[Entity, ...]:
    """Its networkinterfaces, those waiting to be, the storagelinks of its disks, and those
    waiting to be."""
    return (
        networkinterfaces(inst)
        + tuple(storagelink(inst, n) for n in range(len(inst.disks)))
        + waiting(inst)
    )


def networkinterfaces(inst: Instance) -> tuple[Entity, ...]:
    """Its NICs' networkinterfaces, then those of NICs it waits for or could not have."""
    return tuple(networkinterface(inst, n) for n in range(len(inst.nics))) + waiting_nics(inst)


def templates(inst: Instance, model: Model) -> tuple[Category, ...]:
    """The os_tpl and resource_tpl mixins ``inst`` carries: those it was made with, or those
    that describe it (its first disk's image; the instance type of its size)."""
    found = model.by_id
    picked: list[Category] = []
    image = inst.hints.get(OS_TPL) or next(
        (mid for mid, name in model.images.items() if inst.disks and inst.disks[0].uri == name),
        None,
    )
    if image in found:
        picked.append(found[image])
    wanted = inst.hints.get(RESOURCE_TPL)
    sized = [
        mid for mid, t in model.types.items() if (t.cores, t.memory) == (inst.cores, inst.memory)
    ]
    kind = wanted if wanted in sized else (sized[0] if sized else None)
    if kind is not None:
        picked.append(found[kind])
    return tuple(picked)


def networkinterface(inst: Instance, n: int) -> Entity:
    nic = inst.nics[n]
    state = "active" if compute_state(inst) == "active" else "inactive"
    return nic_link(inst, n, nic.network, nic.mac, nic.ip, state=state)


def nic_link(
    inst: Instance,
    n: int,
    network: int,
    mac: str,
    ip: str | None,
    *,
    state: str,
    message: str | None = None,
) -> Entity:
    """The networkinterface ``<inst>-<n>`` of a NIC on ``network`` (one of the compute's, or
    one it waits to have: ``message`` says why)."""
    attrs: dict[str, Value] = {
        "occi.core.id": f"{inst.id}-{n}",
        "occi.core.source": compute_location(inst.id),
        "occi.core.target": network_location(network),
        "occi.networkinterface.interface": f"eth{n}",
        "occi.networkinterface.mac": mac,
        "occi.networkinterface.state": state,
        "occi.networkinterface.allocation": "dynamic",
    }
    if message is not None:
        attrs["occi.networkinterface.state.message"] = message
    if ip:
        attrs["occi.networkinterface.address"] = ip
    return Entity(
        c.NETWORKINTERFACE,
        f"{inst.id}-{n}",
        f"{c.NETWORKINTERFACE.location}{inst.id}-{n}",
        attrs,
        mixins=(c.IPNETWORKINTERFACE,),
        source=(compute_location(inst.id), c.COMPUTE.id),
        target=(network_location(network), c.NETWORK.id),
    )


def pending_nics(inst: Instance) -> list[tuple[int, str]]:
    """The NICs ``inst`` waits to have: (network, MAC), in order."""
    found = []
    for part in inst.hints.get(NICS, "").split():
        network, _, mac = part.partition("/")
        if network.isdigit() and mac:
            found.append((int(network), mac))
    return found


def failed_nics(inst: Instance) -> dict[str, tuple[int, str]]:
    """The NICs ``inst`` waited for that could not be added: MAC -> (network, why)."""
    try:
        found = json.loads(inst.hints.get(NICS_FAILED, "{}"))
    except json.JSONDecodeError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {
        str(mac): (int(v[0]), str(v[1]))
        for mac, v in found.items()
        if isinstance(v, list) and len(v) == 2 and isinstance(v[0], int)
    }


def waiting_nics(inst: Instance) -> tuple[Entity, ...]:
    """The networkinterfaces whose NICs ``inst`` does not have: those it waits for (after its
    own NICs), then those that could not be added (``error``, with why)."""
    first = len(inst.nics)
    return tuple(
        nic_link(
            inst,
            first + k,
            network,
            mac,
            None,
            state="inactive",
            message=f"added once compute {inst.id} runs or is stopped",
        )
        for k, (network, mac) in enumerate(pending_nics(inst))
    ) + tuple(
        nic_link(
            inst,
            first + len(pending_nics(inst)) + k,
            network,
            mac,
            None,
            state="error",
            message=f"not added: {why}",
        )
        for k, (mac, (network, why)) in enumerate(failed_nics(inst).items())
    )


def storagelink(inst: Instance, n: int) -> Entity:
    disk = inst.disks[n]
    volume_id = volume_of(disk.uri)
    if volume_id is not None:
        active = compute_state(inst) == "active"
        return volume_link(
            inst,
            volume_id,
            disk.device or "",
            state="active" if active else "inactive",
            message=f"attached at {disk.device}",
        )
    target = f"{c.STORAGE.location}{inst.id}-{n}"
    attrs: dict[str, Value] = {
        "occi.core.id": f"{inst.id}-{n}",
        "occi.core.source": compute_location(inst.id),
        "occi.core.target": target,
        "occi.storagelink.deviceid": disk.device or f"/dev/vd{chr(ord('a') + n)}",
        "occi.storagelink.state": "active" if compute_state(inst) == "active" else "inactive",
    }
    return Entity(
        c.STORAGELINK,
        f"{inst.id}-{n}",
        f"{c.STORAGELINK.location}{inst.id}-{n}",
        attrs,
        source=(compute_location(inst.id), c.COMPUTE.id),
        target=(target, c.STORAGE.id),
    )


def storage(inst: Instance, n: int, images: Mapping[str, Image]) -> Entity:
    """A disk of an instance as a ``storage`` resource: its image's size, online while the
    instance runs."""
    disk = inst.disks[n]
    image = images.get(disk.uri)
    size = (image.virtual_size or image.size) if image else 0
    attrs: dict[str, Value] = {
        "occi.core.id": f"{inst.id}-{n}",
        "occi.core.title": disk.uri,
        "occi.core.summary": f"disk {n} of instance {inst.name}"
        + (" (persistent)" if disk.persistent else " (copy-on-write overlay)"),
        "occi.storage.size": round(size / 2**30, 4),
        "occi.storage.state": "online" if compute_state(inst) == "active" else "offline",
    }
    return Entity(c.STORAGE, f"{inst.id}-{n}", f"{c.STORAGE.location}{inst.id}-{n}", attrs)


def network_location(network_id: int) -> str:
    return f"{c.NETWORK.location}{network_id}"


def network(net: Network) -> Entity:
    attrs: dict[str, Value] = {
        "occi.core.id": str(net.id),
        "occi.core.title": net.name,
        "occi.network.vlan": int(net.id),
        "occi.network.label": term_of(net.name),
        "occi.network.state": "active",
        "occi.network.allocation": "dynamic",
    }
    return Entity(c.NETWORK, str(net.id), network_location(net.id), attrs, mixins=(c.IPNETWORK,))


def volume_location(volume_id: str) -> str:
    return f"{c.STORAGE.location}{volume_id}"


def link_id(instance_id: int, volume_id: str) -> str:
    return f"{instance_id}-{volume_id}"


def pending(inst: Instance) -> dict[str, str]:
    """The volumes ``inst`` waits to have attached: volume id -> device."""
    return dict(p.split("=", 1) for p in inst.hints.get(PENDING, "").split() if "=" in p)


def volume_link(
    inst: Instance,
    volume_id: str,
    device: str,
    *,
    state: str,
    message: str,
) -> Entity:
    """The link of ``inst`` to the volume ``volume_id`` at ``device``."""
    mountpoint = inst.hints.get(MOUNT + volume_id)
    ident = link_id(inst.id, volume_id)
    attrs: dict[str, Value] = {
        "occi.core.id": ident,
        "occi.core.source": compute_location(inst.id),
        "occi.core.target": volume_location(volume_id),
        "occi.storagelink.deviceid": device,
        "occi.storagelink.state": state,
        "occi.storagelink.state.message": message,
    }
    if mountpoint:
        attrs["occi.storagelink.mountpoint"] = mountpoint
    return Entity(
        c.STORAGELINK,
        ident,
        f"{c.STORAGELINK.location}{ident}",
        attrs,
        source=(compute_location(inst.id), c.COMPUTE.id),
        target=(volume_location(volume_id), c.STORAGE.id),
    )


def failed(inst: Instance) -> dict[str, str]:
    """The volumes ``inst`` was created with that could not be attached: volume id -> why."""
    try:
        found = json.loads(inst.hints.get(FAILED, "{}"))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def waiting(inst: Instance) -> tuple[Entity, ...]:
    """The links ``inst`` was created with whose volumes are not attached (yet, or at all)."""
    wait = tuple(
        volume_link(
            inst, vid, dev, state="inactive", message=f"attached once compute {inst.id} runs"
        )
        for vid, dev in pending(inst).items()
    )
    return wait + tuple(
        volume_link(inst, vid, "", state="error", message=f"not attached: {why}")
        for vid, why in failed(inst).items()
    )
