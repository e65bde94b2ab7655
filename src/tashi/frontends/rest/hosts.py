"""Routes for hosts: getHosts, registerHost, unregisterHost, setHostState, setHostNotes,
setHostConfig and the reservation verbs."""

from __future__ import annotations

from fastapi import APIRouter

from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.service import ClusterService
from tashi.domain.models import Host
from tashi.frontends.rest import render
from tashi.frontends.rest.deps import Caller
from tashi.web.json import JsonResponse


def _one(host: Host, status: int = 200) -> JsonResponse:
    return JsonResponse(render.host(host), status_code=status)


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["hosts"])

    hosts = service.hosts

    @api.get(paths.HOSTS, response_model=list[s.HostOut], summary="getHosts")
    async def get_hosts(caller: Caller) -> JsonResponse:
        return JsonResponse([render.host(h, u) for h, u in await hosts.list_with_usage(caller)])

    @api.post(paths.HOSTS, response_model=s.HostOut, status_code=201, summary="registerHost")
    async def register_host(caller: Caller, body: s.HostIn) -> JsonResponse:
        host = await hosts.register_host(
            caller, body.name, memory=body.memory, cores=body.cores, version=body.version
        )
        return _one(host, 201)

    @api.get(paths.HOST, response_model=s.HostOut, summary="getHost")
    async def get_host(caller: Caller, ref: str) -> JsonResponse:
        return _one(await hosts.get(caller, ref))

    @api.delete(paths.HOST, response_model=s.HostOut, summary="unregisterHost")
    async def unregister_host(caller: Caller, ref: str) -> JsonResponse:
        return _one(await hosts.unregister_host(caller, ref))

    @api.put(paths.HOST_STATE, response_model=s.HostOut, summary="setHostState")
    async def set_host_state(caller: Caller, ref: str, body: s.HostStateIn) -> JsonResponse:
        return _one(await hosts.set_state(caller, ref, body.state))

    @api.put(paths.HOST_NOTES, response_model=s.HostOut, summary="setHostNotes")
    async def set_host_notes(caller: Caller, ref: str, body: s.HostNotesIn) -> JsonResponse:
        return _one(await hosts.set_notes(caller, ref, body.notes))

    @api.patch(paths.HOST_CONFIG, response_model=s.HostOut, summary="setHostConfig")
    async def set_host_config(caller: Caller, ref: str, body: s.HostConfigIn) -> JsonResponse:
        return _one(await hosts.set_config(caller, ref, body.config))

    @api.get(paths.RESERVATIONS, response_model=s.ReservationOut, summary="getReservation")
    async def get_reservation(caller: Caller, ref: str) -> JsonResponse:
        host, users = await hosts.get_reservation(caller, ref)
        return JsonResponse(
            {"hostId": host.id, "hostName": host.name, "users": [render.user(u) for u in users]}
        )

    @api.put(paths.RESERVATION, response_model=s.HostOut, summary="addReservation")
    async def add_reservation(caller: Caller, ref: str, user: str) -> JsonResponse:
        return _one(await hosts.add_reservation(caller, ref, user))

    @api.delete(paths.RESERVATION, response_model=s.HostOut, summary="delReservation")
    async def del_reservation(caller: Caller, ref: str, user: str) -> JsonResponse:
        return _one(await hosts.del_reservation(caller, ref, user))

    return api
