"""The one table from error categories to HTTP statuses, and the handlers that apply it.

Every error leaves as ``{"error": {"code": ..., "message": ...}}``; nothing else (no tracebacks)
ever reaches a client. Unexpected exceptions are logged with the request and answered 500.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from tashi.domain import errors as e
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


def status_of(exc: e.TashiError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    return JsonResponse(error_body(code, message), status_code=status, headers=extra or None)


def headers_of(exc: e.TashiError) -> dict[str, str]:
    """Headers an error carries besides its body: ``Retry-After`` (whole seconds, at least 1)
    when it says when to try again."""
    if isinstance(exc, e.Throttled):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return {}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(e.TashiError)
    async def tashi_error(request: Request, exc: e.TashiError) -> JsonResponse:
        return error_response(status_of(exc), exc.code, exc.message, headers_of(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JsonResponse:
        return error_response(400, e.InvalidInput.code, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JsonResponse:
        code = e.NotFound.code if exc.status_code == 404 else "http_error"
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JsonResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the cluster manager log")
