"""EC2's ``Filter.N.Name``/``Filter.N.Value.M`` and ``MaxResults``/``NextToken``, for every
Describe action.

A filter matches a resource when one of its values matches one of the resource's values for
that name (values OR'ed); every filter must match (filters AND'ed). Values may hold AWS's
wildcards, ``*`` (any run of characters) and ``?`` (one), and ``\\`` escapes them. A filter name
the action does not know is refused with ``InvalidParameterValue``, as AWS does.

Paging: ``NextToken`` is opaque to clients; here it names the last item of the page before,
signed so that a client cannot forge one (``InvalidNextToken`` otherwise), with a key of this
process: a token does not outlive a restart of the cluster manager.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from tashi.frontends.ec2.errors import Ec2Error

T = TypeVar("T")

#: what a resource offers to filters: filter name -> its values (several: any may match)
Values = Mapping[str, Iterable[str]]
_TOKEN_KEY = secrets.token_bytes(32)  # per process: a token outlives no restart


def pattern(value: str) -> re.Pattern[str]:
    """The regular expression of one filter value with AWS's wildcards."""
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
    if escaped:
        out.append(re.escape("\\"))
    return re.compile("".join(out), re.DOTALL)


def compile_filters(
    filters: Sequence[Mapping[str, Any]] | None, known: Iterable[str], action: str
) -> Callable[[Values], bool]:
    """A predicate over a resource's ``Values`` for the request's ``Filters``. ``known`` holds
    the filter names the action supports; a name ending in ``:`` is a prefix (``tag:``)."""
    names = set(known)
    compiled: list[tuple[str, list[re.Pattern[str]]]] = []
    for f in filters or ():
        name = f.get("Name")
        if not name:
            raise Ec2Error("InvalidParameterValue", "The filter 'null' is invalid")
        prefixed = any(n.endswith(":") and name.startswith(n) for n in names)
        if name not in names and not prefixed:
            raise Ec2Error("InvalidParameterValue", f"The filter '{name}' is invalid")
        compiled.append((name, [pattern(v) for v in f.get("Values") or []]))

    def matches(values: Values) -> bool:
        for name, wanted in compiled:
            have = list(values.get(name, ()))
            if not any(p.fullmatch(v) for p in wanted for v in have):
                return False
        return True

    return matches


def page(
    items: Sequence[T],
    key: Callable[[T], str],
    max_results: int | None,
    next_token: str | None,
    *,
    listing: str,
    minimum: int = 5,
    maximum: int = 1000,
) -> tuple[list[T], str | None]:
    """One page of ``items`` (sorted by ``key``, unique) and the token of the next (``None``:
    the last page). The token names the last key given, so a page is right even when items
    came or went meanwhile. ``listing`` names what is listed: its tokens are no good for
    another."""
    if next_token is not None:
        after = _cursor(next_token, listing)
        items = [i for i in items if key(i) > after]
    if max_results is None:
        return list(items), None
    if not minimum <= max_results <= maximum:
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ( {max_results} ) for parameter maxResults is invalid. Expecting a value"
            f" between {minimum} and {maximum}.",
        )
    chosen = list(items[:max_results])
    more = len(items) > max_results
    return chosen, (_token(key(chosen[-1]), listing) if more and chosen else None)


def page_answer(
    member: str,
    items: Sequence[T],
    key: Callable[[T], str],
    params: Mapping[str, Any],
    *,
    listing: str,
    minimum: int = 5,
    maximum: int = 1000,
    render: Callable[[list[T]], Any] = list,
) -> dict[str, Any]:
    """A Describe action's answer: ``member`` holds the page ``params``' ``MaxResults`` and
    ``NextToken`` ask for (``page``), as ``render`` writes it, and ``NextToken`` the next
    page's when there is one."""
    shown, token = page(
        items,
        key,
        params.get("MaxResults"),
        params.get("NextToken"),
        listing=listing,
        minimum=minimum,
        maximum=maximum,
    )
    answer: dict[str, Any] = {member: render(shown)}
    if token:
        answer["NextToken"] = token
    return answer


def _mac(cursor: str, listing: str) -> str:
    text = f"{listing}\n{cursor}".encode()
    return hmac.new(_TOKEN_KEY, text, hashlib.sha256).hexdigest()[:24]


def _token(cursor: str, listing: str) -> str:
    raw = f"{_mac(cursor, listing)}{cursor}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _cursor(token: str, listing: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    mac, cursor = raw[:24], raw[24:]
    if len(mac) < 24 or not hmac.compare_digest(mac, _mac(cursor, listing)):
        raise Ec2Error("InvalidNextToken", "The token provided is invalid or has expired.")
    return cursor
