"""The one seam where the node contract meets httpx.

Every answer that is not 2xx carries ``{"error": {"code", "message"}}`` and becomes the
matching ``TashiError``; a peer that could not be reached becomes ``Unavailable`` naming it,
and one that took the request but never answered (it died, the connection broke, the answer
timed out) ``Unanswered``: the request may have been carried out. Responses are validated
against their schema; a malformed one is a ``BackendFailure``.

Each of these is a failure of the peer (``failed``: the ``Dependency`` it is, a node manager or
the cluster manager), as is an answered failure of the peer's own (a category that is always a
failure): its message, naming the peer's address, is for the log, and the caller of an API that
meets it is told only that a node manager failed (``tashi.web.errors``). ``request_id`` gives
the id of the request being served, sent along (``X-Request-Id``) so that the peer logs under
the same id; the peer's id of an answered failure is in its message.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from typing import TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from tashi.api.schemas import ErrorOut
from tashi.domain.errors import (
    BackendFailure,
    Dependency,
    TashiError,
    Unanswered,
    Unavailable,
    error_class,
)
from tashi.nodeapi import timeouts

M = TypeVar("M")

REQUEST_ID = "X-Request-Id"  # the header that carries the id of the request being served


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every client of this process shares (httpx's default: the
    CA bundle, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured). httpx builds one per client
    otherwise, reading the CA bundle each time: 22 ms of a client's 22.1 ms on the reference
    machine, paid by the cluster manager for its first call to each host."""
    return httpx.create_ssl_context()


class Transport:
    def __init__(
        self,
        base_url: str,
        *,
        peer: str,
        token: str | None = None,
        kind: Dependency = Dependency.node_manager,
        request_id: Callable[[], str | None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.peer = peer
        self.token = token
        self.kind = kind  # what the peer is, as its failures name it
        self._request_id = request_id
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeouts.DEFAULT, connect=timeouts.CONNECT),
            limits=httpx.Limits(  # httpx's default pool, connections reused for less long
                max_connections=100,
                max_keepalive_connections=20,
                keepalive_expiry=timeouts.KEEP_ALIVE,
            ),
            verify=tls_context(),
        )

    async def call(
        self,
        method: str,
        path: str,
        answer: type[M],
        *,
        body: BaseModel | None = None,
        timeout: float = timeouts.DEFAULT,
    ) -> M:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        content = body.model_dump_json().encode() if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        request_id = self._request_id() if self._request_id is not None else None
        if request_id is not None:
            headers[REQUEST_ID] = request_id
        where, failed = f"{self.peer} at {self.base_url}", self.kind
        try:
            reply = await self._http.request(
                method,
                path,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=timeouts.CONNECT),
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unavailable(f"cannot reach {where}: {exc}", failed=failed) from exc
        except httpx.TimeoutException as exc:
            raise Unanswered(f"{where} did not answer in time", failed=failed) from exc
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            raise Unanswered(f"{where} did not answer: {exc}", failed=failed) from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach {where}: {exc}", failed=failed) from exc
        if reply.status_code >= 400:
            raise answer_error(
                reply.status_code, reply.content, reply.headers.get(REQUEST_ID), self.peer, failed
            )
        try:
            result: M = TypeAdapter(answer).validate_json(reply.content)
        except ValidationError as exc:
            message = f"{self.peer} sent a malformed answer to {path}"
            raise BackendFailure(message, failed=failed) from exc
        return result

    async def close(self) -> None:
        await self._http.aclose()


def answer_error(
    status: int, content: bytes, request_id: str | None, peer: str, failed: Dependency
) -> TashiError:
    """The error an answer of ``peer`` (its ``status``, body and ``X-Request-Id``) stands for:
    its category with its message, or, for a failure of the peer's own, a failure of the peer
    (``failed``) naming its request id."""
    try:
        body = ErrorOut.model_validate_json(content).error  # the one error body
    except ValidationError:
        text = content[:200].decode(errors="replace")
        return BackendFailure(f"{peer} answered {status}: {text}", failed=failed)
    cls, message = error_class(body.code), body.message
    if cls.failed is None:
        return cls(message)
    return cls(f"{peer}: {message} (its request {request_id or 'none'})", failed=failed)
