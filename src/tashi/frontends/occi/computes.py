"""The ``compute`` kind on Tashi's instance service: create (createVm with a root disk of its
own, a thin clone of the os_tpl's image, so that ``stop`` keeps it), update, delete, and the
actions ``start``, ``stop``, ``restart``, ``suspend`` mapped onto Tashi's verbs.

| action  | Tashi                                                                  |
|---------|------------------------------------------------------------------------|
| start   | Stopped: startVm; Suspended: resumeVm; Paused: unpauseVm; else nothing |
| stop    | stopVm (``poweroff``: pulling the plug); already inactive: nothing     |
| restart | a reset of the VM (vmmSpecificCall ``reset``)                          |
| suspend | ``hibernate`` (default): suspendVm; ``suspend``: pauseVm               |
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Mapping

from tashi.domain import validation
from tashi.domain.errors import NotFound, TashiError
from tashi.domain.launches import TAG_PREFIX
from tashi.domain.models import Instance, Principal
from tashi.domain.operations import DiskRequest, InstanceQuery, NicRequest, VmRequest
from tashi.domain.states import InstanceState as S
from tashi.frontends.occi import categories as c
from tashi.frontends.occi import entities as ent
from tashi.frontends.occi.context import OcciContext
from tashi.frontends.occi.errors import OcciError, bad
from tashi.frontends.occi.model import MIB_PER_GIB, ROOT_SUFFIX, Model, templates_of
from tashi.frontends.occi.parsed import Parsed, Resolved, Value
from tashi.frontends.occi.usermixins import tag_of

log = logging.getLogger(__name__)

#: the longest title or summary kept
MAX_TEXT = 1024
#: immutable attributes that move on their own: a full update (PUT) of a rendering read a
#: moment before carries them as they were, which is no attempt to change them
MOVING = frozenset({"occi.compute.state", "occi.compute.state.message"})


def _text(attrs: Mapping[str, Value], name: str) -> str:
    """A title or summary: a string of printable characters (it is written in headers)."""
    val = attrs[name]
    if not isinstance(val, str) or len(val) > MAX_TEXT or not val.isprintable():
        raise bad(f"{name} is a string of at most {MAX_TEXT} printable characters")
    return val


async def visible(ctx: OcciContext, caller: Principal, *, own: bool = False) -> list[Instance]:
    """The caller's computes (an admin's view has every user's, unless ``own``)."""
    query = InstanceQuery(user=str(caller.user_id)) if own else InstanceQuery()
    found = await ctx.service.instances.find(caller, query)
    return [i for i in found if i.state not in ent.GONE]


async def get(ctx: OcciContext, caller: Principal, ident: str) -> Instance:
    if not ident.isdigit():
        raise NotFound(f"no compute {ident}")
    inst = await ctx.service.instances.get(caller, ident)
    if inst.state in ent.GONE:
        raise NotFound(f"no compute {ident}")
    return inst


def _number(attrs: Mapping[str, Value], name: str) -> float | None:
    """A numeric attribute (a finite one, of a sane size), or ``None`` when it is absent."""
    val = attrs.get(name)
    if val is None:
        return None
    if isinstance(val, bool) or not isinstance(val, int | float):
        raise bad(f"{name} must be a number")
    if not (isinstance(val, int) and abs(val) < 2**31) and not (
        isinstance(val, float) and math.isfinite(val) and abs(val) < 2**31
    ):
        raise bad(f"{name} must be a number below {2**31}")
    return float(val)


def _size(
    ctx: OcciContext, model: Model, r: Resolved, attrs: Mapping[str, Value]
) -> tuple[int, int, str | None]:
    """Cores, memory (MB) and the resource_tpl: the template wins over attributes (GFD.224
    §3.6.2), attributes over the default template."""
    tpls = [m for m in r.mixins if m.id in model.types]
    if len(tpls) > 1:
        raise bad("a compute takes one resource_tpl")
    if tpls:
        kind = model.types[tpls[0].id]
        return kind.cores, kind.memory, tpls[0].id
    default = ctx.types[ctx.default_type]
    cores = _number(attrs, "occi.compute.cores")
    memory = _number(attrs, "occi.compute.memory")
    if cores is not None and not cores.is_integer():
        raise bad("occi.compute.cores must be a whole number")
    mb = default.memory if memory is None else round(memory * MIB_PER_GIB)
    return (default.cores if cores is None else int(cores)), mb, None


async def _image(
    ctx: OcciContext, caller: Principal, model: Model, r: Resolved
) -> tuple[str, str | None]:
    tpls = [m for m in r.mixins if m.id in model.images]
    if len(tpls) > 1:
        raise bad("a compute takes one os_tpl")
    if tpls:
        return model.images[tpls[0].id], tpls[0].id
    if ctx.default_image:
        return ctx.default_image, None
    offered = templates_of(await ctx.service.images.list(caller))
    if len(offered) == 1:
        return offered[0].name, None
    raise bad(
        "name an os_tpl mixin (GET /-/ lists them: one per image) for the compute's disk"
        " ([OCCI] defaultImage is not set)"
    )


def storage_targets(parsed: Parsed) -> list[str]:
    """The targets of the storagelinks a compute is created with (a link's kind, or else its
    target's collection, says which it is)."""
    return [
        link.target
        for link in parsed.links
        if link.kind == c.STORAGELINK.id
        or (not link.kind and str(c.STORAGE.location) in link.target)
    ]


def _nics(parsed: Parsed) -> list[NicRequest] | None:
    nics: list[NicRequest] = []
    storages = storage_targets(parsed)
    for link in parsed.links:
        if link.target in storages:
            continue
        if link.kind and link.kind != c.NETWORKINTERFACE.id:
            raise bad(
                f"a compute is created with networkinterface and storagelink links, not {link.kind}"
            )
        target = link.target.rstrip("/").rsplit("/", 1)[-1]
        if f"{c.NETWORK.location}{target}" not in link.target or not target.isdigit():
            raise bad(
                f"a networkinterface's target is a network (/network/<id>), not {link.target}"
            )
        nics.append(NicRequest(network=int(target)))
    return nics or None


def _check_applies(r: Resolved, model: Model) -> None:
    for m in r.mixins:
        if m.id in model.user and (not m.applies or c.COMPUTE.id in m.applies):
            continue
        if c.COMPUTE.id not in m.applies and m.id not in model.types and m.id not in model.images:
            raise bad(f"the mixin {m.id} does not apply to compute")


async def create(
    ctx: OcciContext,
    caller: Principal,
    model: Model,
    parsed: Parsed,
    *,
    waits: str | None = None,
) -> Instance:
    """A new compute from a full rendering (kind compute, templates, attributes, links);
    ``waits``: the storages to attach once it runs (``storages.pending_for_create``)."""
    r = parsed.resolved(model)
    if r.kind is not c.COMPUTE:
        raise bad(f"POST /compute/ creates a compute: its rendering names the kind {c.COMPUTE.id}")
    _check_applies(r, model)
    attrs = parsed.attributes
    cores, memory, rtpl = _size(ctx, model, r, attrs)
    image, otpl = await _image(ctx, caller, model, r)
    hostname = attrs.get("occi.compute.hostname")
    name = str(hostname) if hostname else f"occi-{secrets.token_hex(4)}"
    validation.instance_name(name)
    share = _number(attrs, "occi.compute.share")
    hints = {ent.ROOT: name + ROOT_SUFFIX}
    for attr, hint in (("occi.core.title", ent.TITLE), ("occi.core.summary", ent.SUMMARY)):
        if attr in attrs:
            hints[hint] = _text(attrs, attr)
    if otpl:
        hints[ent.OS_TPL] = otpl
    if rtpl:
        hints[ent.RESOURCE_TPL] = rtpl
    for m in r.mixins:
        if m.id in model.user:
            hints[TAG_PREFIX + tag_of(m.id)] = ""
    if waits:
        hints[ent.PENDING] = waits
    request = VmRequest(
        name=name,
        disks=[DiskRequest(uri=name + ROOT_SUFFIX, persistent=True)],
        cores=cores,
        memory=memory,
        cpu_share=1024 if share is None else int(share),
        nics=_nics(parsed),
        own_hints=hints,
    )
    root = await ctx.service.images.root_disk(caller, image, name + ROOT_SUFFIX)
    try:
        return await ctx.service.instances.create_vm(caller, request)
    except BaseException:
        await _discard(ctx, root.name)
        raise


async def _discard(ctx: OcciContext, root: str) -> None:
    try:
        await ctx.service.images.discard_copy(root, "the root disk of a compute that ended")
    except TashiError as exc:
        log.warning("could not remove the root disk %s: %s", root, exc.message)


async def delete(ctx: OcciContext, caller: Principal, inst: Instance) -> None:
    """destroyVm, then the root disk OCCI made for it."""
    try:
        left = await ctx.service.instances.destroy_vm(caller, str(inst.id))
    except NotFound:
        left = None
    root = inst.hints.get(ent.ROOT)
    if left is None and root and any(d.uri == root for d in inst.disks):
        await _discard(ctx, root)


async def update(
    ctx: OcciContext, caller: Principal, model: Model, inst: Instance, parsed: Parsed
) -> Instance:
    """Change what differs from ``inst`` and Tashi can change: title and summary at any time,
    the CPU share of a running compute (adaptCpuShare), cores and memory (attributes or a
    resource_tpl) of a stopped one; the state as the client last read it is ignored
    (``MOVING``); anything else that differs is refused."""
    r = parsed.resolved(model)
    if r.kind is not None and r.kind is not c.COMPUTE:
        raise bad(f"/compute/{inst.id} is a compute, not a {r.kind.term}")
    if r.action is not None:
        raise bad("an action is triggered with ?action=<term>, not by an update")
    _check_applies(r, model)
    now = ent.compute(inst, model).attributes
    own: dict[str, str | None] = {}
    size: tuple[int, int] | None = None
    share: int | None = None
    for name, val in parsed.attributes.items():
        if now.get(name) == val or (name in ("occi.core.id",) and str(val) == now[name]):
            continue
        if name in MOVING:
            continue
        if name == "occi.core.title":
            own[ent.TITLE] = _text(parsed.attributes, name)
        elif name == "occi.core.summary":
            own[ent.SUMMARY] = _text(parsed.attributes, name)
        elif name == "occi.compute.share":
            share = int(_number(parsed.attributes, name) or 0)
        elif name in ("occi.compute.cores", "occi.compute.memory"):
            cores, memory, _ = _size(
                ctx, model, Resolved(None, (), None), {**now, **parsed.attributes}
            )
            size = (cores, memory)
        elif name in now or name in _defined(model):
            raise OcciError(409, f"{name} cannot be changed in Tashi")
        else:
            raise bad(f"unknown attribute {name}")
    current = {m.id for m in ent.templates(inst, model)}
    for m in r.mixins:
        if m.id in current:
            continue
        if m.id in model.images:
            raise OcciError(409, "Tashi cannot change the image (os_tpl) of an existing compute")
        if m.id in model.types:
            kind = model.types[m.id]
            size = (kind.cores, kind.memory)
            own[ent.RESOURCE_TPL] = m.id
        if m.id in model.user:  # a user mixin: its tag (usermixins.py)
            own[TAG_PREFIX + tag_of(m.id)] = ""
    if share is not None:
        inst = await ctx.service.instances.adapt_cpu_share(caller, str(inst.id), share)
    if own or size is not None:
        inst = await ctx.service.attributes.modify(caller, str(inst.id), own=own, size=size)
    return inst


def _defined(model: Model) -> set[str]:
    """The attributes compute and its parents define."""
    return {a.name for kind in model.kind_chain(c.COMPUTE) for a in kind.attributes}


async def act(
    ctx: OcciContext,
    caller: Principal,
    inst: Instance,
    action: c.Category,
    attrs: Mapping[str, Value],
) -> Instance:
    """Trigger a compute action (GFD.224 §3.1 table 2)."""
    method = attrs.get("method")
    if method is not None and (
        not isinstance(method, str) or method not in action.attributes[0].enum
    ):
        allowed = ", ".join(action.attributes[0].enum) if action.attributes else "none"
        raise bad(f"{action.term}: method must be one of {allowed}")
    svc = ctx.service.instances
    ref = str(inst.id)
    if action is c.START:
        starts = {S.Stopped: svc.start_vm, S.Suspended: svc.resume_vm, S.Paused: svc.unpause_vm}
        return await starts[inst.state](caller, ref) if inst.state in starts else inst
    if action is c.STOP:
        if inst.state in (S.Stopped, S.Stopping, S.ShuttingDown):
            return inst
        return await svc.stop_vm(caller, ref, force=method == "poweroff")
    if action is c.RESTART:
        if inst.state not in (S.Running, S.Paused):
            raise OcciError(
                409, f"compute {inst.id} is {inst.state.name}: only a running one restarts"
            )
        await svc.vmm_call(caller, ref, "reset")
        return inst
    if action is c.SUSPEND:
        if method == "suspend":
            return await svc.pause_vm(caller, ref)
        return await svc.suspend_vm(caller, ref)
    raise bad(f"the action {action.id} is not one of compute's")
