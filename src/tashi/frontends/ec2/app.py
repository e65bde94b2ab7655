"""The EC2 Query API as an ASGI app: one endpoint, ``/``, for GET and POST.

A request goes: read the parameters (the query string, and a form body for POST), verify its
AWS Signature Version 4 against the caller's access key (``sigv4``), read the operation's
parameters by AWS's model (``protocol.parse``), answer ``DryRunOperation`` to a dry run that
would have been allowed, call the action's handler (``actions``), and write the answer by the
model (``protocol.render``). Every error leaves in EC2's format with the request's id
(``RequestID``, a UUID as AWS's): an ``Ec2Error`` as it is; another ``TashiError`` by its
category (``CATEGORY``); a failure of what Tashi depends on as a fixed sentence, its detail
logged under the request id; anything unexpected as ``InternalError``, logged with its
traceback. Never a stack trace, never Tashi's JSON.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tashi.domain import errors as e
from tashi.domain.models import Principal
from tashi.frontends.ec2 import protocol, sigv4
from tashi.frontends.ec2.actions import HANDLERS
from tashi.frontends.ec2.context import Ec2Context
from tashi.frontends.ec2.errors import Ec2Error
from tashi.web.errors import public_message

log = logging.getLogger(__name__)

XML = protocol.CONTENT_TYPE
VERSION = "2016-11-15"

#: a Tashi error category -> EC2's code for it, where the handler did not say better
CATEGORY: Mapping[type[e.TashiError], str] = {
    e.NotAuthenticated: "AuthFailure",
    e.Forbidden: "UnauthorizedOperation",
    e.InvalidInput: "InvalidParameterValue",
    e.NotFound: "InvalidParameterValue",
    e.AlreadyExists: "InvalidParameterValue",
    e.InvalidState: "IncorrectState",
    e.InsufficientResources: "InsufficientInstanceCapacity",
    e.Throttled: "RequestLimitExceeded",
    e.Unavailable: "Unavailable",
    e.BackendFailure: "InternalError",
}


def ec2_error(exc: e.TashiError, request_id: str, action: str) -> Ec2Error:
    """``exc`` as the caller is told it; a failure's detail goes to the log."""
    if isinstance(exc, Ec2Error):
        return exc
    code = next((CATEGORY[c] for c in type(exc).__mro__ if c in CATEGORY), "InternalError")
    if exc.failed is not None:
        log.warning(
            "EC2 request %s (%s): %s failure: %s", request_id, action, exc.failed.value, exc.message
        )
    return Ec2Error(code, public_message(exc))


def create_app(ctx: Ec2Context) -> Starlette:
    async def endpoint(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        action = "?"
        try:
            body = await request.body()
            pairs = _parameters(request, body)
            caller = await _caller(ctx, request, body)
            action = _action(pairs)
            params = protocol.parse(action, pairs)  # it skips Action, Version, X-Amz-*
            if params.pop("DryRun", False):
                raise Ec2Error(
                    "DryRunOperation", "Request would have succeeded, but DryRun flag is set."
                )
            result = await HANDLERS[action](ctx, caller, params)
            content = protocol.render(action, result, request_id)
            return Response(content, media_type=XML)
        except e.TashiError as exc:
            err = ec2_error(exc, request_id, action)
            content = protocol.render_error(err.code, err.message, request_id)
            return Response(content, status_code=err.status, media_type=XML)
        except Exception:  # a request handler is a supervision boundary
            log.exception("EC2 request %s (%s) failed", request_id, action)
            content = protocol.render_error(
                "InternalError", "An internal error has occurred", request_id
            )
            return Response(content, status_code=500, media_type=XML)

    app = Starlette(routes=[Route("/", endpoint, methods=["GET", "POST"])])
    return app


def _parameters(request: Request, body: bytes) -> list[tuple[str, str]]:
    """The query string's pairs and, for a form POST, the body's, as sent (in order)."""
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method == "POST":
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and kind not in ("", "application/x-www-form-urlencoded"):
            raise Ec2Error(
                "InvalidParameterValue",
                f"Content-Type {kind} is not accepted: send application/x-www-form-urlencoded",
            )
        try:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise Ec2Error("InvalidParameterValue", "The request body is not UTF-8") from None
    return pairs


def _action(pairs: list[tuple[str, str]]) -> str:
    values = dict(pairs)
    action = values.get("Action")
    if not action:
        raise Ec2Error("MissingAction", "The request must contain the parameter Action")
    protocol.operation(action)  # InvalidAction, or UnsupportedOperation for one of EC2's
    if action not in HANDLERS:  # in the model, not served yet
        raise Ec2Error("UnsupportedOperation", f"The action {action} is not supported by Tashi.")
    return action


async def _caller(ctx: Ec2Context, request: Request, body: bytes) -> Principal:
    found: dict[str, Principal] = {}

    async def secret_of(key_id: str) -> str | None:
        known = await ctx.service.access_keys.secret_of(key_id)
        if known is None:
            return None
        found[key_id] = known[1]
        return known[0]

    signed = sigv4.SignedRequest.from_wire(
        request.method,
        request.scope.get("raw_path") or request.url.path.encode(),
        request.scope.get("query_string", b""),
        request.scope["headers"],
        body,
    )
    verified = await sigv4.verify(signed, secret_of, datetime.now(UTC), region=ctx.region)
    return found[verified.access_key_id]
