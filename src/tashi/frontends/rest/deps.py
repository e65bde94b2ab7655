"""Request plumbing shared by the routers: the caller's identity from the bearer token, and
what an authenticated route declares it may answer besides its success.

``Caller`` is declared at module level because route signatures are resolved from their
module's globals (``from __future__ import annotations`` makes them strings). Through
``openapi.Bearer`` it also puts the bearer scheme on every route that needs a caller, in the
OpenAPI document; the token itself is read here, so a missing one stays the service's 401.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from tashi.domain.ids import INT_MAX
from tashi.domain.models import Principal
from tashi.web import openapi

#: a route that reads a body: its shape (400), its size (413), its deadline (408)
BODY = openapi.WITH_BODY
#: a route with a ``{ref}``: no such thing (404), or a name that several instances bear (400)
REF = (400, 404)
#: the caller's role, or the owner of the instance, does not allow it
ROLE = 403
#: the state does not allow it, the name is taken, or resources are short
CONFLICT = 409
#: a paged list: a marker or limit out of range (``After``, ``Limit``)
PAGE = 400

#: keyset paging of a list: only items whose id is greater than this one (the last id of the
#: page before); ``None``: from the first
After = Annotated[int | None, Query(ge=0, le=INT_MAX)]
#: at most this many items in the answer; ``None``: all that are left
Limit = Annotated[int | None, Query(ge=1, le=INT_MAX)]


def bearer_token(request: Request) -> str | None:
    return bearer_token_of(request.headers.get("authorization", ""))


def bearer_token_of(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header's value, if it is one."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_caller(request: Request, _: openapi.Bearer) -> Principal:
    service = request.app.state.service
    principal: Principal = await service.auth.authenticate(bearer_token(request))
    return principal


Caller = Annotated[Principal, Depends(current_caller)]


def may_fail(*statuses: int | tuple[int, ...]) -> openapi.Responses:
    """The ``responses=`` of an authenticated route: what every one may answer (no valid
    token, a failure of the database), plus ``statuses``."""
    return openapi.error_responses(openapi.AUTHENTICATED, openapi.STORED, *statuses)
