"""The one seam between the client and HTTP: requests, bearer tokens, and error decoding.

``Transport`` sends one request to the cluster manager and returns the decoded JSON body. It logs
in lazily (``POST /v1/auth/token``) when it holds a user name and password but no token, and logs
in again once if a token it obtained itself has expired. Every non-2xx answer becomes the
``TashiError`` category named by its ``{"error": {"code", "message", "requestId"}}`` body; the
message of a server-side failure (5xx) ends with its request id, which an administrator finds in
the cluster manager's log with what the message does not say. Every httpx failure becomes
``Unavailable``: no httpx exception leaves this module. ``sdk.py`` builds on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from tashi.api import paths
from tashi.api.schemas import ErrorOut, LoginIn, TokenOut
from tashi.domain.errors import (
    BackendFailure,
    Forbidden,
    InvalidInput,
    InvalidState,
    NotAuthenticated,
    NotFound,
    TashiError,
    Throttled,
    TooLarge,
    TooSlow,
    Unavailable,
    error_class,
)

M = TypeVar("M", bound=BaseModel)

WHERE_TO_POINT = (
    "check [Client] clusterManagerHost and clusterManagerPort (~/.tashi/Client.cfg)"
    " or the environment variables TASHI_CM_HOST and TASHI_CM_PORT"
)

#: category of an error answer that carries no Tashi error body (a proxy, an unknown route)
_BY_STATUS: Mapping[int, type[TashiError]] = {
    400: InvalidInput,
    401: NotAuthenticated,
    403: Forbidden,
    404: NotFound,
    408: TooSlow,
    409: InvalidState,
    413: TooLarge,
    422: InvalidInput,
    429: Throttled,
    503: Unavailable,
}


class Transport:
    """One HTTP connection pool to one cluster manager, with its credentials."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        self._login = (username, password) if username and password is not None else None
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self.session: TokenOut | None = None  # set when this transport logged in itself

    def close(self) -> None:
        self._http.close()

    def login(self) -> TokenOut:
        """Exchange the user name and password for a bearer token (and who we are)."""
        if self._login is None:
            raise NotAuthenticated("no user name and password to log in with")
        username, password = self._login
        body = LoginIn(username=username, password=password)
        self.session = decode(TokenOut, self.call("POST", paths.TOKEN, body=body, auth=False))
        self.token = self.session.token
        return self.session

    def call(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        """Send one request; the decoded JSON answer (``None`` for an empty one)."""
        if auth and self.token is None:
            self.login()
        response = self._send(method, path, body, params, auth)
        if response.status_code == 401 and auth and self.session is not None:
            self.login()  # our own token expired: log in again, once
            response = self._send(method, path, body, params, auth)
        if not response.is_success:
            raise error_from(response)
        return _json(response) if response.content else None

    def _send(
        self,
        method: str,
        path: str,
        body: BaseModel | None,
        params: Mapping[str, str] | None,
        auth: bool,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        content = body.model_dump_json().encode() if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            return self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"the cluster manager at {self.base_url} did not answer within"
                f" {self._timeout:g} s ([Client] clusterManagerTimeout); the request may"
                " still take effect"
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach the cluster manager at {self.base_url} ({_reason(exc)});"
                f" {WHERE_TO_POINT}"
            ) from exc


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendFailure(
            f"the cluster manager answered {response.request.method} {response.request.url.path}"
            f" with something that is not JSON (HTTP {response.status_code})"
        ) from exc


def error_from(response: httpx.Response) -> TashiError:
    """The ``TashiError`` an error answer stands for."""
    try:
        body = ErrorOut.model_validate(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError):
        cls = _BY_STATUS.get(response.status_code)
        if cls is None:
            cls = BackendFailure if response.status_code >= 500 else TashiError
        return cls(_fallback_message(response))
    message, request_id = body.error.message, body.error.requestId
    if response.status_code >= 500 and request_id is not None:
        message = f"{message} (request {request_id})"
    return error_class(body.error.code)(message)


def _fallback_message(response: httpx.Response) -> str:
    detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    where = f"{response.request.method} {response.request.url.path}"
    return f"HTTP {response.status_code} from {where}" + (f": {detail}" if detail else "")


def decode(model: type[M], data: Any) -> M:
    """Validate an answer against its wire model; a mismatch is the server's fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BackendFailure(
            f"the cluster manager's answer does not match {model.__name__}"
            f" (is it another version of Tashi?): {exc.errors()[0]['msg']}"
        ) from exc


def decode_list(model: type[M], data: Any) -> list[M]:
    """Validate an answer that is a JSON array of ``model``."""
    if not isinstance(data, list):
        raise BackendFailure(
            f"the cluster manager answered {type(data).__name__} where a list of"
            f" {model.__name__} was expected (is it another version of Tashi?)"
        )
    return [decode(model, item) for item in data]
