"""The OCCI 1.2 API as an ASGI app: every path goes through one endpoint.

A request goes: choose the rendering of the answer (``render.choose``: ``Accept``, 406 when
none of ours is acceptable), refuse an OCCI version above 1.2 (GFD.223 §5.3: 501), find the
caller (HTTP Basic or a bearer token, ``context.py``), read what was sent (``render.read``
by ``Content-Type``), build the model of the request (the images are templates), and let
``routes.route`` answer. Every error leaves in the chosen rendering with its GFD.223 status:
an ``OcciError`` as it is, another ``TashiError`` by its category (``errors.STATUS``, a
failure of what Tashi depends on told as a fixed sentence, its detail logged), anything
unexpected as 500 ``internal error``, logged with its traceback. Every answer carries
``Server: … OCCI/1.2``.
"""

from __future__ import annotations

import logging
import re
import uuid
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tashi.domain import errors as e
from tashi.frontends.occi import nics, render, storages
from tashi.frontends.occi.context import OcciContext
from tashi.frontends.occi.errors import OcciError, status_of
from tashi.frontends.occi.routes import Request as OcciRequest
from tashi.frontends.occi.routes import route
from tashi.web.errors import public_message

log = logging.getLogger(__name__)

_VERSION = re.compile(r"OCCI/(\d+)\.(\d+)")
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]


def _check_version(user_agent: str) -> None:
    found = _VERSION.search(user_agent)
    if found and (int(found[1]), int(found[2])) > (1, 2):
        raise OcciError(501, f"this server implements OCCI/1.2, not OCCI/{found[1]}.{found[2]}")


def create_app(ctx: OcciContext) -> Starlette:
    storages.watch(ctx)  # a compute created with storagelinks attaches them when it runs
    nics.watch(ctx)  # a compute waiting for NICs takes them when it can

    async def endpoint(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        out = render.Writer(render.PLAIN, base)
        try:
            headers = request.headers
            out = render.Writer(
                render.choose(headers.get("accept", ""), headers.get("content-type", "")), base
            )
            _check_version(headers.get("user-agent", ""))
            method = "GET" if request.method == "HEAD" else request.method  # HEAD: GET's head
            if method not in ("GET", "POST", "PUT", "DELETE"):
                raise OcciError(
                    405, f"OCCI has no {request.method}", ("GET", "POST", "PUT", "DELETE")
                )
            source = request.client.host if request.client else "?"
            caller = await ctx.caller(headers.get("authorization", ""), source)
            body = await request.body()
            parsed = render.read(headers.get("content-type", ""), body, headers.items())
            pairs = tuple(parse_qsl(request.url.query, keep_blank_values=True))
            req = OcciRequest(
                ctx=ctx,
                caller=caller,
                model=await ctx.model(caller),
                method=method,
                path=unquote(request.url.path),
                params=dict(pairs),
                pairs=pairs,
                parsed=parsed,
                out=out,
            )
            return await route(req)
        except e.TashiError as exc:
            status = status_of(exc)
            if exc.failed is not None:
                log.warning(
                    "OCCI %s %s: %s failure: %s",
                    request.method,
                    request.url.path,
                    exc.failed.value,
                    exc.message,
                )
            allow = exc.allow if isinstance(exc, OcciError) else ()
            return out.error(status, public_message(exc), allow)
        except Exception:  # a request handler is a supervision boundary
            ref = uuid.uuid4()
            log.exception("OCCI %s %s failed (%s)", request.method, request.url.path, ref)
            return out.error(500, f"internal error ({ref})")

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=METHODS)])
