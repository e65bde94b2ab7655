"""The ``networkinterface`` kind made and deleted on its own: a NIC added to an existing
compute and taken from it (``clustermanager/instances/nics.py``).

| OCCI                                          | Tashi                                        |
|-----------------------------------------------|----------------------------------------------|
| POST /link/networkinterface/ (source, target) | a NIC on the network after the compute's     |
|                                               | last: hot-plugged into a running VM          |
| DELETE /link/networkinterface/<i>-<n>         | the compute's last NIC removed (unplugged)   |
| a compute created with networkinterface links | its NICs, as ever (``computes.create``)      |

The link is ``/link/networkinterface/<compute>-<n>``, ``n`` the NIC's place (``eth<n>`` in the
guest). ``occi.networkinterface.mac`` and ``occi.networkinterface.address`` may be given; Tashi
chooses a MAC otherwise. A link that is not the compute's last NIC is not deleted (409).

A compute that cannot take a NIC now (it is starting, suspending or suspended, migrating,
stopping) keeps the link waiting, ``inactive`` (own hint ``entities.NICS``), and takes the NIC
when it runs, is paused or stopped (``add_pending``, on each ``InstanceStateChanged``, as
``storages.attach_pending`` does for storagelinks); one that cannot be added then shows
``error`` with why. A waiting link's DELETE forgets it.
"""

from __future__ import annotations

import json
import logging

from tashi.clustermanager.instances.nics import COLD, HOT
from tashi.clustermanager.instances.specs import random_mac
from tashi.domain import validation
from tashi.domain.errors import InvalidState, NotFound, TashiError
from tashi.domain.ids import InstanceId
from tashi.domain.models import Instance, Principal
from tashi.domain.operations import NicRequest
from tashi.frontends.occi import categories as c
from tashi.frontends.occi import computes
from tashi.frontends.occi import entities as ent
from tashi.frontends.occi.context import OcciContext
from tashi.frontends.occi.entities import Entity
from tashi.frontends.occi.errors import bad
from tashi.frontends.occi.model import Model
from tashi.frontends.occi.parsed import Parsed, Value
from tashi.frontends.occi.storages import SYSTEM, link_end, when_ready

log = logging.getLogger(__name__)

READY = HOT | COLD  # a compute in these takes a NIC now


def _text(attrs: dict[str, Value], name: str) -> str | None:
    val = attrs.get(name)
    if val is None:
        return None
    if not isinstance(val, str):
        raise bad(f"{name} is a string")
    return val


async def link(ctx: OcciContext, caller: Principal, model: Model, parsed: Parsed) -> Entity:
    """A networkinterface made on its own: a new NIC of the compute on the network (now, or
    once the compute can take one)."""
    kind = c.NETWORKINTERFACE
    if parsed.resolved(model).kind is not kind:
        raise bad(f"POST {kind.location} names the kind {kind.id}")
    attrs = dict(parsed.attributes)
    iid = link_end(attrs.get("occi.core.source"), c.COMPUTE, "source", kind)
    nid = link_end(attrs.get("occi.core.target"), c.NETWORK, "target", kind)
    inst = await computes.get(ctx, caller, iid)
    networks = {str(n.id): n for n in await ctx.service.networks.list(caller)}
    if nid not in networks:
        raise NotFound(f"no network {nid}")
    network = int(networks[nid].id)
    mac = _text(attrs, "occi.networkinterface.mac")
    request = NicRequest(network, _text(attrs, "occi.networkinterface.address"), mac)
    if inst.state in READY:
        try:
            done = await ctx.service.nics.attach(caller, str(inst.id), request)
            return ent.networkinterface(done, len(done.nics) - 1)
        except InvalidState:  # it moved on meanwhile: wait for it, if it can no longer take one
            inst = await computes.get(ctx, caller, iid)
            if inst.state in READY:
                raise
    return await _wait(ctx, caller, inst, network, validation.mac(mac) if mac else random_mac())


async def _wait(
    ctx: OcciContext, caller: Principal, inst: Instance, network: int, mac: str
) -> Entity:
    """The NIC kept on the compute until it can take it; added at once if it got there
    meanwhile (its change was published before the NIC was kept)."""
    waits = [*ent.pending_nics(inst), (network, mac)]
    own: dict[str, str | None] = {ent.NICS: _joined(waits)}
    inst = await ctx.service.attributes.modify(caller, str(inst.id), own=own)
    made = find(inst, f"{inst.id}-{len(inst.nics) + len(waits) - 1}")
    if inst.state in READY:
        await add_pending(ctx, inst.id)
    return made


def _joined(waits: list[tuple[int, str]]) -> str | None:
    return " ".join(f"{network}/{mac}" for network, mac in waits) or None


def find(inst: Instance, ident: str) -> Entity:
    """The networkinterface ``<instance>-<n>`` of ``inst`` (404 if there is none)."""
    for one in ent.networkinterfaces(inst):
        if one.id == ident:
            return one
    raise NotFound(f"no networkinterface {ident}")


async def unlink(ctx: OcciContext, caller: Principal, inst: Instance, ident: str) -> None:
    """The link goes: the compute's last NIC removed (hot-unplugged from its VM once the guest
    lets go), or a waiting or failed one forgotten."""
    found = find(inst, ident)
    n = int(ident.rpartition("-")[2])
    if n < len(inst.nics):
        await ctx.service.nics.detach(caller, str(inst.id), n)
        return
    mac = str(found.attributes["occi.networkinterface.mac"])
    waits = [(net, m) for net, m in ent.pending_nics(inst) if m != mac]
    failed = {m: list(v) for m, v in ent.failed_nics(inst).items() if m != mac}
    own = {ent.NICS: _joined(waits), ent.NICS_FAILED: json.dumps(failed) if failed else None}
    await ctx.service.attributes.modify(caller, str(inst.id), own=own)


async def add_pending(ctx: OcciContext, iid: InstanceId) -> None:
    """Add the NICs compute ``iid`` waits for, now that it can take them."""
    inst = await ctx.service.instances.get(SYSTEM, str(iid))
    waits = ent.pending_nics(inst)
    if not waits or inst.state not in READY:
        return
    failed = {m: list(v) for m, v in ent.failed_nics(inst).items()}
    for network, mac in waits:
        try:
            await ctx.service.nics.attach(SYSTEM, str(iid), NicRequest(network, mac=mac))
        except TashiError as exc:
            log.warning("compute %s: its NIC %s is not added: %s", iid, mac, exc.message)
            failed[mac] = [network, exc.message]
    own = {ent.NICS: None, ent.NICS_FAILED: json.dumps(failed) if failed else None}
    try:
        await ctx.service.attributes.modify(SYSTEM, str(iid), own=own)
    except (NotFound, InvalidState) as exc:
        log.info("compute %s changed meanwhile: %s", iid, exc.message)


def watch(ctx: OcciContext) -> None:
    """Add a compute's waiting NICs when it can take them: ``add_pending`` on each change of
    an instance with ``NICS`` to a state in ``READY`` (one at a time per compute)."""
    when_ready(ctx, ent.NICS, READY, add_pending)
