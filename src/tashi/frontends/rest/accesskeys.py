"""Routes for users' EC2 access keys: createAccessKey, listAccessKeys, deleteAccessKey.

The secret is in ``createAccessKey``'s answer only (``clustermanager/accounts/accesskeys.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tashi.api import paths
from tashi.api import schemas as s
from tashi.clustermanager.service import ClusterService
from tashi.domain.models import AccessKey
from tashi.frontends.rest.deps import BODY, REF, ROLE, Caller, Limit, may_fail
from tashi.web.json import JsonResponse


def _key(key: AccessKey, user: str, secret: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"accessKeyId": key.id, "user": user, "createdAt": key.created_at}
    if secret is not None:
        out["secretAccessKey"] = secret
    return out


def router(service: ClusterService) -> APIRouter:
    api = APIRouter(tags=["access keys"])

    @api.post(
        paths.ACCESS_KEYS,
        response_model=s.AccessKeyOut,
        status_code=201,
        summary="createAccessKey",
        # 404: no such user; 403: a user naming another
        responses=may_fail(BODY, ROLE, 404),
    )
    async def create(caller: Caller, body: s.AccessKeyIn) -> JsonResponse:
        made = await service.access_keys.create(caller, body.user)
        return JsonResponse(_key(made.key, made.user.name, made.secret), status_code=201)

    @api.get(
        paths.ACCESS_KEYS,
        response_model=list[s.AccessKeyOut],
        summary="listAccessKeys",
        responses=may_fail(ROLE, REF),
    )
    async def list_keys(
        caller: Caller,
        user: str | None = None,
        # a key id (AKIA + 16 characters; the store keeps up to 32): longer names none
        after: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
        limit: Limit = None,
    ) -> JsonResponse:
        """Oldest first; ``after`` is the access key id of the last key of the page before."""
        keys = await service.access_keys.list(caller, user, after=after, limit=limit)
        return JsonResponse([_key(key, name) for key, name in keys])

    @api.delete(
        paths.ACCESS_KEY,
        response_model=s.AccessKeyOut,
        summary="deleteAccessKey",
        responses=may_fail(404),
    )
    async def delete(caller: Caller, key: str) -> JsonResponse:
        gone = await service.access_keys.delete(caller, key)
        names = await service.users.names()
        return JsonResponse(_key(gone, names.get(gone.user_id, str(gone.user_id))))

    return api
