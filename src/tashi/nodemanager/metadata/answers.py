"""An HTTP request in, EC2's answer out: the instance metadata service's behaviour, no sockets.

* ``GET /`` lists the versions; ``GET /<version>/`` (``latest`` or any date EC2 has) lists
  ``dynamic``, ``meta-data`` and, when there is some, ``user-data``; every version gives the same
  answers. A directory (with or without its trailing ``/``) is a listing, a leaf its text,
  ``user-data`` its bytes; anything else is 404, with EC2's HTML page.
* IMDSv2: ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1 to 21600)
  gives a token (400 without a valid TTL, 403 when the request came through a proxy, as EC2
  tells by ``X-Forwarded-For``); a request bearing ``X-aws-ec2-metadata-token`` that is not a
  valid token of its instance is 401. A request with no token is answered (EC2's "optional"),
  unless tokens are required (``[NodeManager] metadataTokens = required``): then it is 401.
* Other methods are 405. HEAD is GET without the body (the server drops it).

The answer never depends on anything the guest says about itself: the ``Guest`` is chosen by the
tap the request came in on (``server.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tashi.nodemanager.metadata import tree
from tashi.nodemanager.metadata.guests import Guest
from tashi.nodemanager.metadata.tokens import MAX_TTL, Tokens, parse_ttl

#: the versions EC2's service lists at ``/``; each answers like ``latest``
VERSIONS = (
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "2024-04-11",
    "latest",
)
TOKEN_PATH = "latest/api/token"
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "x-aws-ec2-metadata-token"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # as on the request line: a path, maybe a query
    headers: Mapping[str, str]  # names in lower case


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()
    hop_limit: bool = False  # a token: sent with IP TTL 1, as EC2's PUT response hop limit

    @property
    def reason(self) -> str:
        return _REASONS.get(self.status, "Error")


def error(status: int) -> Reply:
    """EC2's HTML page for an error status."""
    title = f"{status} - {_REASONS.get(status, 'Error')}"
    page = (
        '<?xml version="1.0" encoding="iso-8859-1"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
        '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
        f" <head>\n  <title>{title}</title>\n </head>\n"
        f" <body>\n  <h1>{title}</h1>\n </body>\n</html>\n"
    )
    extra = (("Allow", "GET, HEAD, PUT"),) if status == 405 else ()
    return Reply(status, page.encode(), "text/html", extra)


class Answers:
    def __init__(self, tokens: Tokens, *, tokens_required: bool = False) -> None:
        self.tokens = tokens
        self.tokens_required = tokens_required

    def answer(self, request: Request, guest: Guest | None) -> Reply:
        path = request.target.split("?", 1)[0].split("#", 1)[0]
        parts = [p for p in path.split("/") if p]
        method = request.method.upper()
        if guest is None:
            return error(404)
        if "/".join(parts) == TOKEN_PATH:
            return self._token(method, request.headers, guest) if method == "PUT" else error(405)
        if method not in ("GET", "HEAD"):
            return error(405)
        token = request.headers.get(TOKEN_HEADER)
        if token is not None and not self.tokens.valid(token, guest.instance.id):
            return error(401)
        if token is None and self.tokens_required:
            return error(401)
        return _read(parts, guest)

    def _token(self, method: str, headers: Mapping[str, str], guest: Guest) -> Reply:
        if "x-forwarded-for" in headers:
            return error(403)
        ttl = parse_ttl(headers.get(TTL_HEADER))
        if ttl is None:
            return error(400)
        token = self.tokens.make(guest.instance.id, min(ttl, MAX_TTL))
        header = (("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", str(ttl)),)
        return Reply(200, token.encode(), headers=header, hop_limit=True)


def _read(parts: list[str], guest: Guest) -> Reply:
    if not parts:
        return Reply(200, "\n".join(VERSIONS).encode())
    if parts[0] not in VERSIONS:
        return error(404)
    rest = parts[1:]
    if rest == ["user-data"]:
        data = tree.user_data(guest)
        return error(404) if data is None else Reply(200, data, "application/octet-stream")
    entry = tree.find(tree.root(guest), rest)
    if entry is None:
        return error(404)
    if isinstance(entry, dict):
        return Reply(200, tree.listing(entry).encode())
    return Reply(200, entry.encode())
