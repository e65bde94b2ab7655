"""The one exception root of Tashi and its closed set of categories.

Every error a user can see is a ``TashiError`` of one of the categories below. Front-ends map
categories to their protocol in one table (``web/errors.py``); foreign exceptions are wrapped
where they enter (``raise BackendFailure(...) from exc``).
"""

from __future__ import annotations

import enum


class Dependency(enum.Enum):
    """What Tashi depends on, named by an error that is its failure (``TashiError.failed``)."""

    database = "database"
    node_manager = "node manager"
    cluster_manager = "cluster manager"
    file_system = "file system"
    subprocess = "subprocess"  # a program Tashi runs: qemu-img, dnsmasq, ...
    other = "other"


class TashiError(Exception):
    """Root of every error Tashi raises on purpose.

    ``message`` is one line meant for a person; ``code`` is a stable machine-readable name.
    ``failed`` names what Tashi depends on when the error is its failure: the message is then
    for the log only (it may name paths, hosts and ports), and a front-end tells its caller a
    fixed sentence instead (``web/errors.py``). ``None``: the error is about the request itself
    (a bad value, a missing name, a state) and its message is for the caller.
    """

    code = "error"
    failed: Dependency | None = None

    def __init__(self, message: str, *, failed: Dependency | None = None) -> None:
        super().__init__(message)
        self.message = message
        if failed is not None:
            self.failed = failed


class NotFound(TashiError):
    """The named thing (instance, host, user, network, image) does not exist."""

    code = "not_found"


class AlreadyExists(TashiError):
    """A thing with that name or id exists already."""

    code = "already_exists"


class InvalidState(TashiError):
    """The operation is not allowed in the thing's current state."""

    code = "invalid_state"


class StateConflict(InvalidState):
    """A compare-and-swap save found another state than the one it expected (a lost race)."""

    code = "state_conflict"


class InvalidInput(TashiError):
    """The request itself is malformed or out of range."""

    code = "invalid_input"


class TooLarge(InvalidInput):
    """The request is bigger than the server accepts (a body past its cap, a huge head)."""

    code = "too_large"


class TooSlow(InvalidInput):
    """The request arrived too slowly: its head or body was not complete within the deadline."""

    code = "request_timeout"


class InsufficientResources(TashiError):
    """Not enough capacity (memory, cores, addresses) to do it."""

    code = "insufficient_resources"


class Forbidden(TashiError):
    """The caller is known but may not do this."""

    code = "forbidden"


class NotAuthenticated(Forbidden):
    """The caller did not prove who they are (no, bad or expired credentials)."""

    code = "not_authenticated"


class BackendFailure(TashiError):
    """Something Tashi depends on (database, hypervisor, node manager) failed: always a
    ``failed`` one (``other`` unless the seam that raised it says what)."""

    code = "backend_failure"
    failed: Dependency | None = Dependency.other


class Unavailable(TashiError):
    """The operation cannot be done now (for example no node manager is there to do it)."""

    code = "unavailable"


class Unanswered(Unavailable):
    """The request went out but its answer never came (the peer died or the connection broke
    after sending): it may or may not have been carried out. Ask the peer what it did before
    acting as if it failed."""

    code = "unanswered"


class Busy(Unavailable):
    """The server has as many requests in progress as it takes (``maxRequests``): refused
    without being tried; retry after ``retry_after`` seconds."""

    code = "busy"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Throttled(Unavailable):
    """Too many attempts (failed logins): refused without being tried; retry after
    ``retry_after`` seconds."""

    code = "throttled"

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


CATEGORIES: tuple[type[TashiError], ...] = (
    NotFound,
    AlreadyExists,
    InvalidState,
    StateConflict,
    InvalidInput,
    TooLarge,
    TooSlow,
    InsufficientResources,
    Forbidden,
    NotAuthenticated,
    BackendFailure,
    Unavailable,
    Unanswered,
    Busy,
    Throttled,
)


def error_class(code: str) -> type[TashiError]:
    """The category whose ``code`` is ``code`` (``TashiError`` for an unknown code)."""
    for cls in CATEGORIES:
        if cls.code == code:
            return cls
    return TashiError
