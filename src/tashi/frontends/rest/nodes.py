"""Routes node managers call: register, heartbeat, events (``tashi.nodeapi``).

Each parses its wire body, calls one ``NodeReports`` method with the domain's records and
renders the answer, both through ``tashi.nodeapi.convert``.
"""

from __future__ import annotations

from fastapi import APIRouter

from tashi.clustermanager.service import ClusterService
from tashi.frontends.rest.deps import Caller
from tashi.nodeapi import convert, paths
from tashi.nodeapi import schemas as s
from tashi.web.json import JsonResponse


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["nodes"])
    reports = service.node_reports

    @api.post(paths.NODE_REGISTER, response_model=s.RegisterOut, summary="registerNodeManager")
    async def register(caller: Caller, body: s.RegisterIn) -> JsonResponse:
        ack = await reports.register(caller, convert.registration(body))
        return JsonResponse(convert.registered_wire(ack).model_dump())

    @api.post(paths.NODE_HEARTBEAT, response_model=s.HeartbeatOut, summary="heartbeat")
    async def heartbeat(caller: Caller, host_id: int, body: s.HeartbeatIn) -> JsonResponse:
        ack = await reports.heartbeat(caller, host_id, convert.heartbeat(body))
        return JsonResponse(convert.heartbeat_reply_wire(ack).model_dump())

    @api.post(paths.NODE_EVENTS, response_model=s.EventsOut, summary="vmUpdate")
    async def events(caller: Caller, host_id: int, body: s.EventsIn) -> JsonResponse:
        accepted = await reports.events(caller, host_id, [convert.event(e) for e in body.events])
        return JsonResponse(s.EventsOut(accepted=accepted).model_dump())

    return api
