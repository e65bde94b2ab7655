"""Request plumbing shared by the routers: the caller's identity from the bearer token.

``Caller`` is declared at module level because route signatures are resolved from their
module's globals (``from __future__ import annotations`` makes them strings).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tashi.domain.models import Principal


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_caller(request: Request) -> Principal:
    service = request.app.state.service
    principal: Principal = await service.auth.authenticate(bearer_token(request))
    return principal


Caller = Annotated[Principal, Depends(current_caller)]
