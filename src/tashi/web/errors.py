"""The one table from error categories to HTTP statuses, and the handlers that apply it.

Every error leaves as ``{"error": {"code": ..., "message": ..., "requestId": ...}}`` with the
request's id (``requestids``) in the body and the ``X-Request-Id`` header; nothing else ever
reaches a client. What a caller is told is ``public_message``: an error about the request itself
(a bad value, a missing name, a state) keeps its message; the failure of something Tashi depends
on (``TashiError.failed``: the database, a node manager, files, a program) is told as a fixed
sentence (``FAILED``; ``UNAVAILABLE`` or ``UNANSWERED`` when it could not be reached or did not
answer), and its message, which may name paths, hosts and ports, goes to the log under the
request id. Unexpected exceptions are logged with their traceback under the request id
and answered 500 ``internal error``.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from tashi.domain import errors as e
from tashi.web import requestids
from tashi.web.json import JsonResponse

log = logging.getLogger(__name__)

STATUS: dict[type[e.TashiError], int] = {
    e.NotFound: 404,
    e.AlreadyExists: 409,
    e.InvalidState: 409,
    e.StateConflict: 409,
    e.InvalidInput: 400,
    e.TooLarge: 413,
    e.TooSlow: 408,
    e.InsufficientResources: 409,
    e.Forbidden: 403,
    e.NotAuthenticated: 401,
    e.BackendFailure: 502,
    e.Unavailable: 503,
    e.Throttled: 429,
}


#: what a caller is told of a failure (``BackendFailure``) of what Tashi depends on
FAILED: dict[e.Dependency, str] = {
    e.Dependency.database: "database unavailable, retry",
    e.Dependency.node_manager: "the node manager failed",
    e.Dependency.cluster_manager: "the cluster manager failed",
    e.Dependency.file_system: "file system failure on the server",
    e.Dependency.subprocess: "a program the server runs failed",
    e.Dependency.other: "a service the server depends on failed",
}
#: what is named in the sentences of an ``Unavailable`` failure (it could not be reached)
NAMES: dict[e.Dependency, str] = {
    e.Dependency.database: "the database",
    e.Dependency.node_manager: "the node manager",
    e.Dependency.cluster_manager: "the cluster manager",
    e.Dependency.file_system: "the file system",
    e.Dependency.subprocess: "a program the server runs",
    e.Dependency.other: "a service the server depends on",
}
UNAVAILABLE = "{} is unavailable, retry"
UNANSWERED = "no answer came from {}: the request may have been carried out"
INTERNAL = "internal error"


def status_of(exc: e.TashiError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def public_message(exc: e.TashiError) -> str:
    """What a caller is told of ``exc`` (see the module doc)."""
    if exc.failed is None:
        return exc.message
    if isinstance(exc, e.Unanswered):
        return UNANSWERED.format(NAMES[exc.failed])
    if isinstance(exc, e.Unavailable):
        return UNAVAILABLE.format(NAMES[exc.failed])
    return FAILED[exc.failed]


def for_caller(exc: e.TashiError, where: str) -> dict[str, str]:
    """``exc`` as an error body's ``error`` tells it to the caller of the request being
    served; a failure's detail is logged here, under the request id, with ``where`` (what
    was being done: a route, an instance of a batch)."""
    if exc.failed is not None:
        log.warning(
            "request %s: %s: %s failure: %s",
            requestids.current(),
            where,
            exc.failed.value,
            exc.message,
        )
    return error_of(exc.code, public_message(exc))


def error_of(code: str, message: str) -> dict[str, str]:
    """The ``error`` of a body answering the request being served (``message``: fit for its
    caller), with the request's id."""
    error = {"code": code, "message": message}
    request_id = requestids.current()
    if request_id is not None:
        error["requestId"] = request_id
    return error


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": error_of(code, message)}


def error_response(
    status: int, error: dict[str, str], headers: dict[str, str] | None = None
) -> JsonResponse:
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    if "requestId" in error:  # also set by ``RequestIds``, but not on the way out of a 500
        extra[requestids.HEADER] = error["requestId"]
    return JsonResponse({"error": error}, status_code=status, headers=extra or None)


def headers_of(exc: e.TashiError) -> dict[str, str]:
    """Headers an error carries besides its body: ``Retry-After`` (whole seconds, at least 1)
    when it says when to try again."""
    if isinstance(exc, e.Throttled | e.Busy):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return {}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    """The handlers of every error an app may raise (the app adds ``RequestIds`` itself,
    outermost but for its counters)."""

    @app.exception_handler(e.TashiError)
    async def tashi_error(request: Request, exc: e.TashiError) -> JsonResponse:
        error = for_caller(exc, f"{request.method} {request.url.path}")
        return error_response(status_of(exc), error, headers_of(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JsonResponse:
        return error_response(400, error_of(e.InvalidInput.code, _validation_message(exc)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JsonResponse:
        code = e.NotFound.code if exc.status_code == 404 else "http_error"
        return error_response(exc.status_code, error_of(code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JsonResponse:
        log.exception(
            "request %s: unexpected error in %s %s",
            requestids.current(),
            request.method,
            request.url.path,
        )
        return error_response(500, error_of("internal_error", INTERNAL))
