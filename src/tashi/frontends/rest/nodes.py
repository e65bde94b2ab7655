"""Routes node managers call: register, heartbeat, events (``tashi.nodeapi``).

Each parses its wire body, calls one ``NodeReports`` method with the domain's records and
renders the answer, both through ``tashi.nodeapi.convert``. Besides the usual failures of an
authenticated route with a body, a node may be refused (403: not a node account, or the host
is another node's), name a host it did not register (404), or race another write (409).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from tashi.clustermanager.service import ClusterService
from tashi.frontends.rest.deps import Caller
from tashi.nodeapi import convert, paths
from tashi.nodeapi import schemas as s
from tashi.web import openapi
from tashi.web.json import JsonResponse

#: a host's id in a route, within what the store keeps (beyond it: 400, not a failure)
HostIdPath = Annotated[int, Path(ge=-(2**63), le=2**63 - 1)]

_REPORT = openapi.error_responses(
    openapi.AUTHENTICATED, openapi.STORED, openapi.WITH_BODY, 403, 404, 409
)


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["nodes"])
    reports = service.node_reports

    @api.post(
        paths.NODE_REGISTER,
        response_model=s.RegisterOut,
        summary="registerNodeManager",
        responses=_REPORT,
    )
    async def register(caller: Caller, body: s.RegisterIn) -> JsonResponse:
        ack = await reports.register(caller, convert.registration(body))
        return JsonResponse(convert.registered_wire(ack).model_dump())

    @api.post(
        paths.NODE_HEARTBEAT, response_model=s.HeartbeatOut, summary="heartbeat", responses=_REPORT
    )
    async def heartbeat(caller: Caller, host_id: HostIdPath, body: s.HeartbeatIn) -> JsonResponse:
        ack = await reports.heartbeat(caller, host_id, convert.heartbeat(body))
        return JsonResponse(convert.heartbeat_reply_wire(ack).model_dump())

    @api.post(paths.NODE_EVENTS, response_model=s.EventsOut, summary="vmUpdate", responses=_REPORT)
    async def events(caller: Caller, host_id: HostIdPath, body: s.EventsIn) -> JsonResponse:
        accepted = await reports.events(caller, host_id, [convert.event(e) for e in body.events])
        return JsonResponse(s.EventsOut(accepted=accepted).model_dump())

    return api
