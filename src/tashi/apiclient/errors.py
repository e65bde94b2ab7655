"""The one place that turns the cluster manager's answers into values or ``TashiError``s.

An error answer carries ``{"error": {"code", "message", "requestId"}}`` (``ErrorOut``) and
becomes the category ``tashi.domain.errors.error_class`` names for its code; the message of a
server-side failure (5xx) ends with its request id, which an administrator finds in the cluster
manager's log with what the message does not say. An error answer without that body (a proxy, an
unknown route) gets a category by its status. An httpx failure becomes ``Unavailable``
(``unreachable``), and an answer that does not match its wire model a ``BackendFailure``: it is
the server's fault, most likely another version of Tashi. ``connection.py`` and ``client.py``
use these; nothing else in the tree decodes the API's answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from tashi.api.schemas import ErrorBody, ErrorOut
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


def error_from(response: httpx.Response) -> TashiError:
    """The ``TashiError`` an error answer stands for."""
    try:
        body = ErrorOut.model_validate_json(response.content)
    except ValidationError:
        cls = _BY_STATUS.get(response.status_code)
        if cls is None:
            cls = BackendFailure if response.status_code >= 500 else TashiError
        return cls(_fallback_message(response))
    request_id = body.error.requestId
    if response.status_code >= 500 and request_id is not None:
        return error_of(body.error, after=f"(request {request_id})")
    return error_of(body.error)


def error_of(body: ErrorBody, *, before: str = "", after: str = "") -> TashiError:
    """The category an error body names (an error answer's, a failed image task's, a batch's
    failure), its message between ``before`` and ``after``."""
    message = " ".join(part for part in (before, body.message, after) if part)
    return error_class(body.code)(message)


def _fallback_message(response: httpx.Response) -> str:
    detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return f"HTTP {response.status_code} from {_where(response)}" + (
        f": {detail}" if detail else ""
    )


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path}"


def unreachable(exc: httpx.HTTPError, base_url: str, timeout: float) -> Unavailable:
    """What a request that got no answer (``exc``) means to the caller."""
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(
            f"the cluster manager at {base_url} did not answer within {timeout:g} s"
            " ([Client] clusterManagerTimeout); the request may still take effect"
        )
    reason = (str(exc) or type(exc).__name__).splitlines()[0]
    return Unavailable(
        f"cannot reach the cluster manager at {base_url} ({reason}); {WHERE_TO_POINT}"
    )


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON, for the few answers that are not one wire model."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _not_json(response) from exc


def _not_json(response: httpx.Response) -> BackendFailure:
    return BackendFailure(
        f"the cluster manager answered {_where(response)} with something that is not JSON"
        f" (HTTP {response.status_code})"
    )


@cache
def _adapter(shape: Any) -> TypeAdapter[Any]:
    return TypeAdapter(shape)


def decode(model: type[M], response: httpx.Response) -> M:
    """The answer validated against its wire model; a mismatch is the server's fault."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise _mismatch(model, response, exc, many=False) from exc


def decode_list(model: type[M], response: httpx.Response) -> list[M]:
    """An answer that is a JSON array of ``model``."""
    adapter: TypeAdapter[list[M]] = _adapter(list[model])  # type: ignore[valid-type]
    try:
        return adapter.validate_json(response.content)
    except ValidationError as exc:
        raise _mismatch(model, response, exc, many=True) from exc


def _mismatch(
    model: type[BaseModel], response: httpx.Response, exc: ValidationError, *, many: bool
) -> BackendFailure:
    try:
        data = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _not_json(response)
    if many and not isinstance(data, list):
        return BackendFailure(
            f"the cluster manager answered {type(data).__name__} where a list of"
            f" {model.__name__} was expected (is it another version of Tashi?)"
        )
    return BackendFailure(
        f"the cluster manager's answer does not match {model.__name__}"
        f" (is it another version of Tashi?): {exc.errors()[0]['msg']}"
    )
