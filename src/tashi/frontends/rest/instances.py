"""Routes for instances: createVm, createMany, getInstances, destroyVm and the lifecycle verbs.

Each handler converts the wire model into a domain request, calls one service method, and
renders the result. Nothing here decides anything.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.instances.batches import BatchResult
from tashi.clustermanager.service import ClusterService
from tashi.domain.models import Instance
from tashi.domain.operations import (
    BatchSelect,
    DiskRequest,
    InstanceQuery,
    NicRequest,
    VmRequest,
)
from tashi.frontends.rest import render
from tashi.frontends.rest.deps import (
    BODY,
    CONFLICT,
    REF,
    ROLE,
    After,
    Caller,
    Limit,
    may_fail,
)
from tashi.frontends.rest.render import Json
from tashi.web import errors
from tashi.web.json import JsonResponse

#: a verb on one instance: it must exist and be the caller's, in a state that allows the verb;
#: its node manager may fail (502) or be out of reach (503), as the database may
ON_ONE = may_fail(REF, ROLE, CONFLICT)
ON_ONE_WITH_BODY = may_fail(REF, BODY, ROLE, CONFLICT)


def _vm_request(body: s.InstanceIn | s.CreateManyIn, name: str) -> VmRequest:
    return VmRequest(
        name=name,
        disks=[DiskRequest(uri=d.uri, persistent=d.persistent, copy=d.copy_) for d in body.disks],
        cores=body.cores,
        memory=body.memory,
        cpu_share=body.cpuShare,
        nics=None
        if body.nics is None
        else [NicRequest(network=n.network, ip=n.ip, mac=n.mac) for n in body.nics],
        hints=body.hints,
        group_name=body.groupName,
        user_id=body.userId,
    )


class _Out:
    """Renders service results, with owner names, as JSON responses."""

    def __init__(self, service: ClusterService) -> None:
        self._service = service

    async def _rendered(self, items: list[Instance]) -> list[Json]:
        names = await self._service.users.names()
        reports = await self._service.hosts.reports(
            {i.host_id for i in items if i.host_id is not None}
        )
        return [render.instance(i, names, reports) for i in items]

    async def one(self, inst: Instance | None, status: int = 200) -> JsonResponse:
        if inst is None:
            return JsonResponse({"message": "removed"})
        return JsonResponse((await self._rendered([inst]))[0], status_code=status)

    async def many(self, items: list[Instance], status: int = 200) -> JsonResponse:
        return JsonResponse(await self._rendered(items), status_code=status)

    async def batch(self, result: BatchResult) -> JsonResponse:
        failed = [
            {"id": i.id, "name": i.name, "error": errors.for_caller(e, f"instance {i.name}")}
            for i, e in result.failed
        ]
        done = await self._rendered(result.done)
        return JsonResponse({"done": done, "removed": result.removed, "failed": failed})


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["instances"])

    out = _Out(service)

    @api.get(
        paths.INSTANCES,
        response_model=list[s.InstanceOut],
        summary="getInstances",
        # 404: a user or host filter that names none; 409: a state filter that names no state
        responses=may_fail(REF, ROLE, CONFLICT),
    )
    async def get_instances(
        caller: Caller,
        user: str | None = None,
        state: str | None = None,
        host: str | None = None,
        name: str | None = None,
        after: After = None,
        limit: Limit = None,
    ) -> JsonResponse:
        query = InstanceQuery(
            user=user, state=state, host=host, name=name, after_id=after, limit=limit
        )
        return await out.many(await service.instances.find(caller, query))

    @api.post(
        paths.INSTANCES,
        response_model=s.InstanceOut,
        status_code=201,
        summary="createVm",
        responses=may_fail(BODY, ROLE, 404, CONFLICT),
    )
    async def create_vm(caller: Caller, body: s.InstanceIn) -> JsonResponse:
        inst = await service.instances.create_vm(caller, _vm_request(body, body.name))
        return await out.one(inst, 201)

    @api.post(
        paths.CREATE_MANY,
        response_model=list[s.InstanceOut],
        status_code=201,
        summary="createMany",
        responses=may_fail(BODY, ROLE, 404, CONFLICT),
    )
    async def create_many(caller: Caller, body: s.CreateManyIn) -> JsonResponse:
        request = _vm_request(body, body.basename)
        return await out.many(await service.instances.create_many(caller, request, body.count), 201)

    @api.post(
        paths.ACTIVATE_GROUP,
        response_model=list[s.InstanceOut],
        summary="activateGroup (agent)",
        responses=may_fail(BODY, ROLE, 404, CONFLICT),
    )
    async def activate_group(caller: Caller, body: s.ActivateGroupIn) -> JsonResponse:
        placements = [(p.instance, p.host) for p in body.placements]
        return await out.many(await service.groups.activate_group(caller, placements))

    @api.post(
        paths.DESTROY_MANY,
        response_model=s.BatchResultOut,
        summary="destroyMany",
        responses=may_fail(BODY, ROLE, 404),
    )
    async def destroy_many(caller: Caller, body: s.BatchSelectIn) -> JsonResponse:
        which = BatchSelect(basename=body.basename, ids=body.ids)
        return await out.batch(await service.batches.destroy_many(caller, which))

    @api.post(
        paths.SHUTDOWN_MANY,
        response_model=s.BatchResultOut,
        summary="shutdownMany",
        responses=may_fail(BODY, ROLE, 404),
    )
    async def shutdown_many(caller: Caller, body: s.BatchSelectIn) -> JsonResponse:
        which = BatchSelect(basename=body.basename, ids=body.ids)
        return await out.batch(await service.batches.shutdown_many(caller, which))

    @api.get(
        paths.INSTANCE,
        response_model=s.InstanceOut,
        summary="getInstance",
        responses=may_fail(REF, ROLE),
    )
    async def get_instance(caller: Caller, ref: str) -> JsonResponse:
        return await out.one(await service.instances.get(caller, ref))

    @api.get(
        paths.INSTANCE_HISTORY,
        response_model=list[s.InstanceEventOut],
        summary="getInstanceHistory",
        responses=may_fail(REF, ROLE),
    )
    async def history(
        caller: Caller,
        ref: str,
        limit: Annotated[int, Query(ge=1, le=10000)] = 100,
        after: After = None,
    ) -> JsonResponse:
        events = await service.instances.history(caller, ref, limit, after)
        return JsonResponse(
            [
                {
                    "id": e.id,
                    "instanceId": e.instance_id,
                    "at": e.at,
                    "kind": e.kind,
                    "message": e.message,
                }
                for e in events
            ]
        )

    @api.delete(
        paths.INSTANCE,
        response_model=s.InstanceOut | s.MessageOut,
        summary="destroyVm",
        responses=may_fail(REF, ROLE, CONFLICT),
    )
    async def destroy_vm(caller: Caller, ref: str, force: bool = False) -> JsonResponse:
        return await out.one(await service.instances.destroy_vm(caller, ref, force=force))

    _lifecycle_routes(api, service, out)
    return api


def _lifecycle_routes(api: APIRouter, service: ClusterService, out: _Out) -> None:
    """The verbs that act on one instance: ``POST /v1/instances/{ref}/<verb>``."""

    svc = service.instances

    def route(verb: str) -> str:
        return paths.INSTANCE_ACTION.replace("{action}", verb)

    @api.post(
        route("shutdown"), response_model=s.InstanceOut, summary="shutdownVm", responses=ON_ONE
    )
    async def shutdown(caller: Caller, ref: str) -> JsonResponse:
        return await out.one(await svc.shutdown_vm(caller, ref))

    @api.post(route("pause"), response_model=s.InstanceOut, summary="pauseVm", responses=ON_ONE)
    async def pause(caller: Caller, ref: str) -> JsonResponse:
        return await out.one(await svc.pause_vm(caller, ref))

    @api.post(route("unpause"), response_model=s.InstanceOut, summary="unpauseVm", responses=ON_ONE)
    async def unpause(caller: Caller, ref: str) -> JsonResponse:
        return await out.one(await svc.unpause_vm(caller, ref))

    @api.post(route("suspend"), response_model=s.InstanceOut, summary="suspendVm", responses=ON_ONE)
    async def suspend(caller: Caller, ref: str) -> JsonResponse:
        return await out.one(await svc.suspend_vm(caller, ref))

    @api.post(route("resume"), response_model=s.InstanceOut, summary="resumeVm", responses=ON_ONE)
    async def resume(caller: Caller, ref: str) -> JsonResponse:
        return await out.one(await svc.resume_vm(caller, ref))

    @api.post(
        route("migrate"),
        response_model=s.InstanceOut,
        summary="migrateVm",
        responses=ON_ONE_WITH_BODY,
    )
    async def migrate(caller: Caller, ref: str, body: s.MigrateIn) -> JsonResponse:
        return await out.one(await svc.migrate_vm(caller, ref, body.targetHost))

    @api.post(
        route("activate"),
        response_model=s.InstanceOut,
        summary="activateVm (agent)",
        responses=ON_ONE_WITH_BODY,
    )
    async def activate(caller: Caller, ref: str, body: s.ActivateIn) -> JsonResponse:
        return await out.one(await svc.activate_vm(caller, ref, body.host))

    @api.post(
        route("hold"),
        response_model=s.InstanceOut,
        summary="holdVm (agent)",
        responses=ON_ONE_WITH_BODY,
    )
    async def hold(caller: Caller, ref: str, body: s.HoldIn) -> JsonResponse:
        return await out.one(await svc.hold_vm(caller, ref, body.reason))

    @api.post(
        route("cpuShare"),
        response_model=s.InstanceOut,
        summary="adaptCpuShare",
        responses=ON_ONE_WITH_BODY,
    )
    async def cpu_share(caller: Caller, ref: str, body: s.CpuShareIn) -> JsonResponse:
        return await out.one(await svc.adapt_cpu_share(caller, ref, body.share))

    @api.post(
        route("vmmSpecificCall"),
        response_model=s.MessageOut,
        summary="vmmSpecificCall",
        responses=ON_ONE_WITH_BODY,
    )
    async def vmm_call(caller: Caller, ref: str, body: s.VmmCallIn) -> JsonResponse:
        return JsonResponse({"message": await svc.vmm_call(caller, ref, body.arg)})
