"""The change feed route: agents long-poll it instead of listing the cluster over and over."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.accounts.auth import require_role
from tashi.clustermanager.service import ClusterService
from tashi.domain.models import Role
from tashi.frontends.rest.deps import ROLE, Caller, may_fail
from tashi.web.json import JsonResponse

MAX_TIMEOUT = 60.0


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["instances"])

    @api.get(
        paths.INSTANCE_CHANGES,
        response_model=s.ChangesOut,
        summary="waitForChanges",
        responses=may_fail(400, ROLE),
    )
    async def changes(
        caller: Caller,
        after: Annotated[int, Query(ge=0)] = 0,
        timeout: Annotated[float, Query(ge=0, le=MAX_TIMEOUT)] = 25.0,
    ) -> JsonResponse:
        require_role(caller, Role.agent, Role.admin, doing="watching for changes")
        version = await service.db.feed.wait(after, timeout)
        return JsonResponse({"version": version})

    return api
