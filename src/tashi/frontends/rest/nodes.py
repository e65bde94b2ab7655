"""Routes node managers call: register, heartbeat, events (``tashi.nodeapi``)."""

from __future__ import annotations

from fastapi import APIRouter

from tashi.clustermanager.service import ClusterService
from tashi.frontends.rest.deps import Caller
from tashi.nodeapi import paths
from tashi.nodeapi import schemas as s
from tashi.web.json import JsonResponse


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["nodes"])
    reports = service.node_reports

    @api.post(paths.NODE_REGISTER, response_model=s.RegisterOut, summary="registerNodeManager")
    async def register(caller: Caller, body: s.RegisterIn) -> JsonResponse:
        return JsonResponse((await reports.register(caller, body)).model_dump())

    @api.post(paths.NODE_HEARTBEAT, response_model=s.HeartbeatOut, summary="heartbeat")
    async def heartbeat(caller: Caller, host_id: int, body: s.HeartbeatIn) -> JsonResponse:
        return JsonResponse((await reports.heartbeat(caller, host_id, body)).model_dump())

    @api.post(paths.NODE_EVENTS, response_model=s.EventsOut, summary="vmUpdate")
    async def events(caller: Caller, host_id: int, body: s.EventsIn) -> JsonResponse:
        return JsonResponse({"accepted": await reports.events(caller, host_id, body)})

    return api
