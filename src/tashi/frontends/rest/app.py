"""Builds the cluster manager's FastAPI application: routers, error table, health, metrics.

``/health`` and ``/metrics`` are the only routes open without credentials; the OpenAPI
description is served at ``/v1/openapi.json`` to authenticated callers. Every request is given
its id (``tashi.web.requestids``), then passes ``tashi.web.limits.RequestLimits`` (the body cap
and deadline of ``[ClusterManagerService]``), inside the request counter, so refusals show in
``/metrics`` by their status and carry the request id like every error answer.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import tashi
from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.service import ClusterService
from tashi.config.clustermanager import ClusterManagerServiceSettings
from tashi.frontends.rest import (
    accesskeys,
    addresses,
    admin,
    hosts,
    images,
    instances,
    nodes,
    watch,
)
from tashi.frontends.rest.deps import Caller
from tashi.frontends.rest.renewals import HeartbeatLane
from tashi.nodeapi import paths as node_paths
from tashi.web import errors, openapi
from tashi.web.json import JsonResponse
from tashi.web.limits import HttpLimits, RequestLimits
from tashi.web.requestids import RequestIds


def _json_error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": openapi.REQUEST_ID_HEADER,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }


#: how ``/metrics``, whose answer is text, documents its errors, which are not (given the
#: route's ``model``, FastAPI would file them under its text type)
METRICS_ERRORS: openapi.Responses = {
    **{status: _json_error(openapi.WHY[status]) for status in (500, *openapi.STORED)},
    "default": _json_error("an error"),
}


class RequestStats:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()
        self.seconds = 0.0


class CountRequests:
    """Pure ASGI middleware counting requests by method and status (cheap: no body wrapping)."""

    def __init__(self, app: ASGIApp, stats: RequestStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.stats.counts[(scope["method"], status)] += 1
            self.stats.seconds += time.perf_counter() - start


def create_app(service: ClusterService, limits: HttpLimits | None = None) -> FastAPI:
    """The app; ``limits`` default to ``[ClusterManagerService]``'s defaults."""
    app = FastAPI(
        title="Tashi cluster manager",
        version=tashi.__version__,
        description="Manage virtual machines on a cluster of hosts. Authenticate with "
        "POST /v1/auth/token, then send 'Authorization: Bearer <token>'.",
        default_response_class=JsonResponse,
        # Every error, whatever its status, is one shape (``tashi.web.errors``); without this
        # the document would promise FastAPI's 422 body, which Tashi never sends.
        responses=openapi.DEFAULT,
        openapi_url=None,  # served below, behind authentication like every other /v1 route
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    errors.install(app)
    # Routes are matched in order: the node routes first, as every host calls them every
    # few seconds (a heartbeat that says nothing new is answered before: ``renewals.py``).
    app.include_router(nodes.router(service))
    app.include_router(watch.router(service))
    app.include_router(instances.router(service))
    app.include_router(hosts.router(service))
    app.include_router(admin.router(service))
    app.include_router(accesskeys.router(service))
    app.include_router(images.router(service))
    app.include_router(addresses.router(service))
    stats = RequestStats()

    @app.get(paths.OPENAPI, tags=["health"], include_in_schema=False)
    async def document(caller: Caller) -> JsonResponse:
        return JsonResponse(app.openapi())

    @app.get(
        paths.HEALTH,
        response_model=s.HealthOut,
        tags=["health"],
        responses=openapi.error_responses(500),
    )
    async def health() -> JsonResponse:
        return JsonResponse({"status": "ok", "version": tashi.__version__})

    @app.get(
        paths.METRICS,
        response_class=PlainTextResponse,
        tags=["health"],
        responses=METRICS_ERRORS,
    )
    async def metrics() -> PlainTextResponse:
        lines = ["# TYPE tashi_instances gauge"]
        for state, count in (await service.instance_counts()).items():
            lines.append(f'tashi_instances{{state="{state.name}"}} {count}')
        reports = service.node_reports
        lines.append("# TYPE tashi_heartbeats_total counter")
        lines.append(f'tashi_heartbeats_total{{way="renewal"}} {reports.renewed}')
        lines.append(f'tashi_heartbeats_total{{way="full"}} {reports.full}')
        lines.append("# TYPE tashi_heartbeat_renewal_writes_total counter")
        lines.append(f"tashi_heartbeat_renewal_writes_total {service.renewals.batches}")
        lines.append("# TYPE tashi_http_requests_total counter")
        for (method, status), count in sorted(stats.counts.items()):
            lines.append(
                f'tashi_http_requests_total{{method="{method}",status="{status}"}} {count}'
            )
        lines.append("# TYPE tashi_http_request_seconds_total counter")
        lines.append(f"tashi_http_request_seconds_total {stats.seconds:.6f}")
        return PlainTextResponse("\n".join(lines) + "\n")

    app.add_middleware(HeartbeatLane, service=service)  # added first: innermost
    limits = limits or HttpLimits.of(ClusterManagerServiceSettings())
    # node reports are admitted past maxRequests: at most one per host, and they keep leases
    app.add_middleware(RequestLimits, limits=replace(limits, always=(node_paths.NODE_REGISTER,)))
    app.add_middleware(RequestIds)
    app.add_middleware(CountRequests, stats=stats)  # added last: outermost
    return app
