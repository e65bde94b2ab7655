"""What the OpenAPI documents of Tashi's HTTP apps say that FastAPI cannot find out itself.

FastAPI documents a route's success from its ``response_model``; this module declares the rest,
once, for the cluster manager's API (``tashi.frontends.rest``) and the node API
(``tashi.nodemanager.routes``) alike:

- ``error_responses(404, 409)``: the error answers a route can really give, each with the one
  error body (``tashi.api.schemas.ErrorOut``, written by ``tashi.web.errors``, whose ``STATUS``
  table says which category is answered with which status) and the ``X-Request-Id`` header;
  give it as a route's ``responses=``. ``AUTHENTICATED``, ``WITH_BODY`` and ``STORED`` name the
  statuses shared by whole kinds of routes, so a route adds only its own (a missing ``ref``:
  404; a state or a name already taken: 409; a role: 403);
- ``DEFAULT``: the catch-all for an app's ``responses=``, so a status no route names (405 for a
  method a path does not have) is still documented in the one shape;
- ``Bearer``: a parameter type (``_: Bearer``, or a dependency's ``Depends(BEARER)``) that
  declares the bearer-token security scheme on a route and checks nothing: each app checks the
  token itself, so a missing one stays its 401, in its own words.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tashi.api.schemas import ErrorOut
from tashi.web.requestids import HEADER

Responses = dict[int | str, dict[str, Any]]

#: the header every answer carries, as the OpenAPI document describes it
REQUEST_ID_HEADER = {
    HEADER: {
        "description": "the request's id: the caller's own if sane, else made; error bodies"
        " carry it as requestId",
        "schema": {"type": "string"},
    }
}

#: why each status is answered (``tashi.web.errors.STATUS``, plus FastAPI's own refusals)
WHY: dict[int, str] = {
    400: "invalid input: a parameter or the body does not fit the schema, or a value is refused",
    401: "not authenticated: no bearer token, or one that is unknown or has expired",
    403: "forbidden: the caller's role or ownership does not allow it",
    404: "not found: what the request names does not exist (or is not the caller's to see)",
    408: "the request's body did not arrive within the server's deadline",
    409: "conflict: the state does not allow it, the name is taken, or resources are short",
    413: "the request's body is larger than the server accepts",
    429: "throttled: too many attempts; retry after the Retry-After header's seconds",
    500: "internal error, logged under the request id",
    502: "something the server depends on failed (its database, a node manager, a file, a"
    " program); the detail is logged under the request id",
    503: "something the server depends on could not be reached or did not answer; retry",
}

#: every route that needs a bearer token; its own failures (``STORED``) come on top
AUTHENTICATED = (401, 500)
#: every route that reads a body: its shape, its size and its deadline (``tashi.web.limits``)
WITH_BODY = (400, 408, 413)
#: every route whose work reads or writes the database
STORED = (502, 503)

DEFAULT: Responses = {
    "default": {"model": ErrorOut, "description": "an error", "headers": REQUEST_ID_HEADER}
}

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="a token from POST /v1/auth/token (the node API: the secret its node manager"
    " gave the cluster manager)",
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def error_responses(*statuses: int | tuple[int, ...]) -> Responses:
    """The ``responses=`` of a route that can answer ``statuses`` (numbers, or tuples of them
    such as ``AUTHENTICATED``), each in the one error body, in ascending order."""
    flat: set[int] = set()
    for status in statuses:
        flat.update(status if isinstance(status, tuple) else (status,))
    return {
        status: {"model": ErrorOut, "description": WHY[status], "headers": REQUEST_ID_HEADER}
        for status in sorted(flat)
    }
