"""OCCI's errors: an HTTP status from GFD.223 §5.4 and a sentence for the caller.

An ``OcciError`` is a ``TashiError`` the front-end raises about the request itself (a rendering
it cannot read, a method a path does not take, a media type it cannot write); ``STATUS`` maps
the service layer's categories to the statuses GFD.223 lists. The body is the sentence, in the
rendering the client asked for (``render.error``).
"""

from __future__ import annotations

from collections.abc import Mapping

from tashi.domain import errors as e
from tashi.domain.errors import TashiError

#: a Tashi error category -> its status (the most specific class wins)
STATUS: Mapping[type[e.TashiError], int] = {
    e.NotAuthenticated: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.InvalidInput: 400,
    e.AlreadyExists: 409,
    e.InvalidState: 409,
    e.StateConflict: 409,
    e.InsufficientResources: 409,
    e.TooLarge: 413,
    e.TooSlow: 408,
    e.Throttled: 429,
    e.BackendFailure: 502,
    e.Unavailable: 503,
}


class OcciError(TashiError):
    """An error about the request, answered with ``status`` (and, for 405, ``allow``)."""

    def __init__(self, status: int, message: str, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.allow = allow


def bad(message: str) -> OcciError:
    return OcciError(400, message)


def not_implemented(message: str) -> OcciError:
    return OcciError(501, message)


def status_of(exc: TashiError) -> int:
    if isinstance(exc, OcciError):
        return exc.status
    return next((STATUS[k] for k in type(exc).__mro__ if k in STATUS), 500)
