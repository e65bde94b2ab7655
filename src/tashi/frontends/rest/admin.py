"""Routes for logins, users and networks (images: ``images.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.service import ClusterService
from tashi.domain.ids import NetworkId, UserId
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
    bearer_token,
    may_fail,
)
from tashi.web import openapi
from tashi.web.json import JsonResponse


def router(service: ClusterService) -> APIRouter:
    api = APIRouter()

    @api.post(
        paths.TOKEN,
        response_model=s.TokenOut,
        tags=["auth"],
        summary="log in",
        # no token needed, but a wrong password is a 401, and repeated ones are throttled
        responses=openapi.error_responses(BODY, 401, 429, 500, openapi.STORED),
    )
    async def login(body: s.LoginIn, request: Request) -> JsonResponse:
        source = request.client.host if request.client else "unknown"
        done = await service.auth.login(body.username, body.password, source)
        return JsonResponse(
            {"token": done.token, "expiresAt": done.expires, "user": render.user(done.user)}
        )

    @api.delete(
        paths.TOKEN,
        response_model=s.MessageOut,
        tags=["auth"],
        summary="log out",
        responses=may_fail(),
    )
    async def logout(caller: Caller, request: Request) -> JsonResponse:
        await service.auth.logout(bearer_token(request) or "")
        return JsonResponse({"message": "logged out"})

    @api.get(
        paths.WHOAMI,
        response_model=s.UserOut,
        tags=["auth"],
        summary="whoami",
        responses=may_fail(),
    )
    async def whoami(caller: Caller) -> JsonResponse:
        return JsonResponse(render.user(await service.users.get(caller, str(caller.user_id))))

    @api.get(
        paths.USERS,
        response_model=list[s.UserOut],
        tags=["users"],
        summary="getUsers",
        responses=may_fail(PAGE),
    )
    async def get_users(caller: Caller, after: After = None, limit: Limit = None) -> JsonResponse:
        marker = None if after is None else UserId(after)
        users = await service.users.list(caller, after=marker, limit=limit)
        return JsonResponse([render.user(u) for u in users])

    @api.post(
        paths.USERS,
        response_model=s.UserOut,
        status_code=201,
        tags=["users"],
        summary="registerUser",
        responses=may_fail(BODY, ROLE, CONFLICT),
    )
    async def register_user(caller: Caller, body: s.UserIn) -> JsonResponse:
        user = await service.users.register(
            caller, body.name, body.password, priority=body.priority, role=body.role
        )
        return JsonResponse(render.user(user), status_code=201)

    @api.get(
        paths.USER,
        response_model=s.UserOut,
        tags=["users"],
        summary="getUser",
        responses=may_fail(REF, ROLE),
    )
    async def get_user(caller: Caller, ref: str) -> JsonResponse:
        return JsonResponse(render.user(await service.users.get(caller, ref)))

    @api.delete(
        paths.USER,
        response_model=s.UserOut,
        tags=["users"],
        summary="unregisterUser",
        responses=may_fail(REF, ROLE, CONFLICT),
    )
    async def unregister_user(caller: Caller, ref: str) -> JsonResponse:
        return JsonResponse(render.user(await service.users.unregister(caller, ref)))

    @api.get(
        paths.NETWORKS,
        response_model=list[s.NetworkOut],
        tags=["networks"],
        summary="getNetworks",
        responses=may_fail(PAGE),
    )
    async def get_networks(
        caller: Caller, after: After = None, limit: Limit = None
    ) -> JsonResponse:
        default = service.networks.default_network
        marker = None if after is None else NetworkId(after)
        networks = await service.networks.list(caller, after=marker, limit=limit)
        return JsonResponse([render.network(n, default) for n in networks])

    @api.post(
        paths.NETWORKS,
        response_model=s.NetworkOut,
        status_code=201,
        tags=["networks"],
        summary="addNetwork",
        responses=may_fail(BODY, ROLE, CONFLICT),
    )
    async def add_network(caller: Caller, body: s.NetworkIn) -> JsonResponse:
        net = await service.networks.add(caller, body.id, body.name)
        return JsonResponse(render.network(net, service.networks.default_network), status_code=201)

    @api.delete(
        paths.NETWORK,
        response_model=s.NetworkOut,
        tags=["networks"],
        summary="removeNetwork",
        responses=may_fail(REF, ROLE, CONFLICT),
    )
    async def remove_network(caller: Caller, ref: str) -> JsonResponse:
        net = await service.networks.remove(caller, ref)
        return JsonResponse(render.network(net, service.networks.default_network))

    return api
