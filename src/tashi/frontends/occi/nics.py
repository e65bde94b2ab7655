"""The ``networkinterface`` kind made and deleted on its own: a NIC added to an existing
compute and taken from it (``clustermanager/instances/nics.py``).

| OCCI                                          | Tashi                                        |
|-----------------------------------------------|----------------------------------------------|
| POST /link/networkinterface/ (source, target) | a NIC on the network, after the compute's    |
|                                               | last: hot-plugged into a running VM          |
| DELETE /link/networkinterface/<i>-<n>         | the compute's last NIC removed (hot-unplugged)|
| a compute created with networkinterface links | its NICs, as ever (``computes.create``)      |

The link is ``/link/networkinterface/<compute>-<n>``, ``n`` the NIC's place (``eth<n>`` in the
guest). ``occi.networkinterface.mac`` and ``occi.networkinterface.address`` may be given; Tashi
chooses a MAC otherwise. A compute that is starting, stopping, migrating or suspended answers
409 (try again once it runs or is stopped); so does a link that is not the compute's last.
"""

from __future__ import annotations

from tashi.domain.errors import NotFound
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
from tashi.frontends.occi.storages import link_end


def _text(attrs: dict[str, Value], name: str) -> str | None:
    val = attrs.get(name)
    if val is None:
        return None
    if not isinstance(val, str):
        raise bad(f"{name} is a string")
    return val


async def link(ctx: OcciContext, caller: Principal, model: Model, parsed: Parsed) -> Entity:
    """A networkinterface made on its own: a new NIC of the compute on the network."""
    if parsed.resolved(model).kind is not c.NETWORKINTERFACE:
        raise bad(f"POST {c.NETWORKINTERFACE.location} names the kind {c.NETWORKINTERFACE.id}")
    attrs = dict(parsed.attributes)
    link = c.NETWORKINTERFACE
    iid = link_end(attrs.get("occi.core.source"), c.COMPUTE, "source", link)
    nid = link_end(attrs.get("occi.core.target"), c.NETWORK, "target", link)
    inst = await computes.get(ctx, caller, iid)
    networks = {str(n.id): n for n in await ctx.service.networks.list(caller)}
    if nid not in networks:
        raise NotFound(f"no network {nid}")
    request = NicRequest(
        network=int(networks[nid].id),
        mac=_text(attrs, "occi.networkinterface.mac"),
        ip=_text(attrs, "occi.networkinterface.address"),
    )
    done = await ctx.service.nics.attach(caller, str(inst.id), request)
    return ent.networkinterface(done, len(done.nics) - 1)


def index_of(inst: Instance, ident: str) -> int:
    """The NIC of ``inst`` that link ``<instance>-<n>`` names (404 if there is none)."""
    head, dash, tail = ident.partition("-")
    if not (dash and head == str(inst.id) and tail.isdigit() and int(tail) < len(inst.nics)):
        raise NotFound(f"no networkinterface {ident}")
    return int(tail)


async def unlink(ctx: OcciContext, caller: Principal, inst: Instance, index: int) -> None:
    """The link goes: the compute's NIC ``index`` (its last) removed, hot-unplugged from its
    VM once the guest lets go."""
    await ctx.service.nics.detach(caller, str(inst.id), index)
