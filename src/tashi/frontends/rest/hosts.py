"""Routes for hosts: getHosts, registerHost, unregisterHost, setHostState, setHostNotes,
setHostConfig and the reservation verbs."""

from __future__ import annotations

from fastapi import APIRouter

from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.service import ClusterService
from tashi.domain.ids import HostId
from tashi.domain.models import Host
from tashi.frontends.rest import render
from tashi.frontends.rest.deps import (
    BODY,
    CONFLICT,
    PAGE,
    REF,
    ROLE,
    After,
    Caller,
    Limit,
    may_fail,
)
from tashi.web.json import JsonResponse


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["hosts"])

    hosts = service.hosts

    def _one(host: Host, status: int = 200) -> JsonResponse:
        return JsonResponse(render.host(host, hosts.report(host)), status_code=status)

    @api.get(
        paths.HOSTS, response_model=list[s.HostOut], summary="getHosts", responses=may_fail(PAGE)
    )
    async def get_hosts(caller: Caller, after: After = None, limit: Limit = None) -> JsonResponse:
        page = await hosts.list_with_usage(
            caller, after=None if after is None else HostId(after), limit=limit
        )
        return JsonResponse([render.host(h, hosts.report(h), u) for h, u in page])

    @api.post(
        paths.HOSTS,
        response_model=s.HostOut,
        status_code=201,
        summary="registerHost",
        responses=may_fail(BODY, ROLE, CONFLICT),
    )
    async def register_host(caller: Caller, body: s.HostIn) -> JsonResponse:
        host = await hosts.register_host(
            caller, body.name, memory=body.memory, cores=body.cores, version=body.version
        )
        return _one(host, 201)

    @api.get(paths.HOST, response_model=s.HostOut, summary="getHost", responses=may_fail(REF))
    async def get_host(caller: Caller, ref: str) -> JsonResponse:
        return _one(await hosts.get(caller, ref))

    @api.delete(
        paths.HOST,
        response_model=s.HostOut,
        summary="unregisterHost",
        responses=may_fail(REF, ROLE, CONFLICT),
    )
    async def unregister_host(caller: Caller, ref: str) -> JsonResponse:
        return _one(await hosts.unregister_host(caller, ref))

    @api.put(
        paths.HOST_STATE,
        response_model=s.HostOut,
        summary="setHostState",
        responses=may_fail(REF, BODY, ROLE, CONFLICT),
    )
    async def set_host_state(caller: Caller, ref: str, body: s.HostStateIn) -> JsonResponse:
        return _one(await hosts.set_state(caller, ref, body.state))

    @api.put(
        paths.HOST_NOTES,
        response_model=s.HostOut,
        summary="setHostNotes",
        responses=may_fail(REF, BODY, ROLE),
    )
    async def set_host_notes(caller: Caller, ref: str, body: s.HostNotesIn) -> JsonResponse:
        return _one(await hosts.set_notes(caller, ref, body.notes))

    @api.patch(
        paths.HOST_CONFIG,
        response_model=s.HostOut,
        summary="setHostConfig",
        responses=may_fail(REF, BODY, ROLE),
    )
    async def set_host_config(caller: Caller, ref: str, body: s.HostConfigIn) -> JsonResponse:
        return _one(await hosts.set_config(caller, ref, body.config))

    @api.get(
        paths.RESERVATIONS,
        response_model=s.ReservationOut,
        summary="getReservation",
        responses=may_fail(REF, ROLE),
    )
    async def get_reservation(caller: Caller, ref: str) -> JsonResponse:
        host, users = await hosts.get_reservation(caller, ref)
        return JsonResponse(
            {"hostId": host.id, "hostName": host.name, "users": [render.user(u) for u in users]}
        )

    @api.put(
        paths.RESERVATION,
        response_model=s.HostOut,
        summary="addReservation",
        responses=may_fail(REF, ROLE, CONFLICT),
    )
    async def add_reservation(caller: Caller, ref: str, user: str) -> JsonResponse:
        return _one(await hosts.add_reservation(caller, ref, user))

    @api.delete(
        paths.RESERVATION,
        response_model=s.HostOut,
        summary="delReservation",
        responses=may_fail(REF, ROLE, CONFLICT),
    )
    async def del_reservation(caller: Caller, ref: str, user: str) -> JsonResponse:
        return _one(await hosts.del_reservation(caller, ref, user))

    return api
