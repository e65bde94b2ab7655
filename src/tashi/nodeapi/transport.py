"""The one seam where the node contract meets httpx.

Every answer that is not 2xx carries ``{"error": {"code", "message"}}`` and becomes the
matching ``TashiError``; a peer that could not be reached becomes ``Unavailable`` naming it,
and one that took the request but never answered (it died, the connection broke, the answer
timed out) ``Unanswered``: the request may have been carried out. Responses are validated
against their schema; a malformed one is a ``BackendFailure``.
"""

from __future__ import annotations

import functools
import ssl
from typing import TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from tashi.domain.errors import (
    BackendFailure,
    TashiError,
    Unanswered,
    Unavailable,
    error_class,
)
from tashi.nodeapi import timeouts

M = TypeVar("M")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every client of this process shares (httpx's default: the
    CA bundle, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured). httpx builds one per client
    otherwise, reading the CA bundle each time: 22 ms of a client's 22.1 ms on the reference
    machine, paid by the cluster manager for its first call to each host."""
    return httpx.create_ssl_context()


class Transport:
    def __init__(self, base_url: str, *, peer: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.peer = peer
        self.token = token
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeouts.DEFAULT, connect=timeouts.CONNECT),
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
        try:
            reply = await self._http.request(
                method,
                path,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=timeouts.CONNECT),
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unavailable(f"cannot reach {self.peer} at {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise Unanswered(f"{self.peer} at {self.base_url} did not answer in time") from exc
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            raise Unanswered(f"{self.peer} at {self.base_url} did not answer: {exc}") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach {self.peer} at {self.base_url}: {exc}") from exc
        if reply.status_code >= 400:
            raise _error(reply, self.peer)
        try:
            result: M = TypeAdapter(answer).validate_json(reply.content)
        except ValidationError as exc:
            raise BackendFailure(f"{self.peer} sent a malformed answer to {path}") from exc
        return result

    async def close(self) -> None:
        await self._http.aclose()


def _error(reply: httpx.Response, peer: str) -> TashiError:
    try:
        body = reply.json()["error"]
        return error_class(str(body["code"]))(str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return BackendFailure(f"{peer} answered {reply.status_code}: {reply.text[:200]}")
