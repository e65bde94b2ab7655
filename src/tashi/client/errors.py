"""Client-side errors and the exit status of every error category.

The CLI (``cli.py``) turns any ``TashiError`` into one line on stderr and the exit status below;
``UsageError`` is what the argument parser (``argv.py``) and the value parsers (``parsing.py``)
raise for a command line that cannot be understood, before anything is sent. The table is
documented in ``docs/client.md``; scripts may rely on it.
"""

from __future__ import annotations

from tashi.config import ConfigError
from tashi.domain.errors import (
    AlreadyExists,
    BackendFailure,
    Forbidden,
    InsufficientResources,
    InvalidInput,
    InvalidState,
    NotAuthenticated,
    NotFound,
    TashiError,
    Unavailable,
)


class UsageError(InvalidInput):
    """The command line itself is wrong: unknown verb, bad, missing or repeated argument."""

    code = "usage"


EXIT_OK = 0
EXIT_INTERRUPTED = 130

#: most specific first: the first class an error is an instance of decides its status
EXIT_CODES: tuple[tuple[type[TashiError], int, str], ...] = (
    (UsageError, 2, "the command line is wrong (unknown verb, bad or missing argument)"),
    (ConfigError, 12, "a configuration file or variable is wrong"),
    (NotFound, 3, "no such instance, host, user, network or image"),
    (AlreadyExists, 4, "a thing with that name or id exists already"),
    (InvalidState, 5, "not allowed in the current state (includes lost races)"),
    (InvalidInput, 6, "the cluster manager refused a value"),
    (InsufficientResources, 7, "not enough capacity"),
    (NotAuthenticated, 9, "no credentials, or wrong or expired ones"),
    (Forbidden, 8, "the user may not do this (not the owner, not an admin)"),
    (BackendFailure, 10, "the cluster manager's database or a node manager failed"),
    (Unavailable, 11, "cannot be done now: cluster manager unreachable, no node manager"),
    (TashiError, 1, "any other error"),
)


def exit_code(error: TashiError) -> int:
    """The exit status for ``error``, by its category."""
    for cls, status, _ in EXIT_CODES:
        if isinstance(error, cls):
            return status
    return 1
