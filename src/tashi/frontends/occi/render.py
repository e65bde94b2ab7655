"""Content negotiation and the answers of every kind, in the rendering the client chose.

``Rendering`` is chosen from ``Accept`` (GFD.223 §5: the client SHOULD say what it takes; a
server MUST say what it sends): ``text/plain`` (and ``text/occi+plain``), ``text/occi``,
``application/occi+json`` (``application/json`` is taken as it), ``text/uri-list`` for
collections only (GFD.229 §6: 400 for anything else). No ``Accept`` or ``*/*``: the rendering
of the request's ``Content-Type``, else ``text/plain``. None of ours acceptable: 406.
``read`` parses a request body (or the headers of ``text/occi``) by its ``Content-Type``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from starlette.responses import Response

import tashi
from tashi.frontends.occi import jsonrender, text
from tashi.frontends.occi.categories import Category
from tashi.frontends.occi.entities import Entity
from tashi.frontends.occi.errors import OcciError, bad
from tashi.frontends.occi.parsed import Parsed

PLAIN = "text/plain"
OCCI_PLAIN = "text/occi+plain"
HEADERS = "text/occi"
JSON = "application/occi+json"
URI_LIST = "text/uri-list"
#: what this server writes, in its order of preference
OFFERED = (PLAIN, OCCI_PLAIN, HEADERS, JSON, URI_LIST)
ALIASES = {"application/json": JSON}
SERVER = f"tashi/{tashi.__version__} OCCI/1.2"
ACCEPTS = ", ".join(OFFERED)


def _answer(body: bytes, status: int, headers: Mapping[str, str], media: str) -> Response:
    """A response whose ``Content-Type`` is exactly ``media`` (no charset: clients compare
    it with what they asked for; the text renderings are ASCII or UTF-8 all the same)."""
    response = Response(body, status, {**headers, "Content-Type": media})
    return response


def _media(value: str) -> tuple[str, float]:
    kind, *params = (p.strip() for p in value.split(";"))
    q = 1.0
    for p in params:
        name, _, val = p.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(val)
            except ValueError:
                q = 0.0
    return kind.lower(), q


def choose(accept: str, content_type: str) -> str:
    """The media type to answer with; ``406`` when ``accept`` takes none of ours."""
    request_kind = ALIASES.get(_media(content_type)[0], _media(content_type)[0])
    fallback = request_kind if request_kind in OFFERED[:4] else PLAIN
    if not accept.strip():
        return fallback
    ranked = sorted((_media(v) for v in accept.split(",") if v.strip()), key=lambda m: -m[1])
    for kind, q in ranked:
        if q <= 0:
            continue
        kind = ALIASES.get(kind, kind)
        if kind in ("*/*", "text/*"):
            return fallback if kind == "*/*" or fallback.startswith("text/") else PLAIN
        if kind in OFFERED:
            return kind
    raise OcciError(406, f"none of the media types accepted ({accept}) is one of: {ACCEPTS}")


def read(content_type: str, body: bytes, headers: Iterable[tuple[str, str]]) -> Parsed:
    """What the client sent, by ``Content-Type``; ``text/occi`` (or no body with OCCI headers)
    reads the headers."""
    kind = ALIASES.get(_media(content_type)[0], _media(content_type)[0])
    occi_headers = [(n, v) for n, v in headers if n.lower() in _HEADER_NAMES]
    if kind == JSON:
        return jsonrender.parse(body) if body.strip() else Parsed()
    if kind in (PLAIN, OCCI_PLAIN):
        return text.parse([*text.body_lines(body), *occi_headers])
    if kind == HEADERS or not body.strip():
        return text.parse(occi_headers)
    raise OcciError(
        415 if kind else 400,
        f"Content-Type {kind or '(none)'} is not one this server reads: {ACCEPTS}",
    )


_HEADER_NAMES = {n.lower() for n in text.NAMES}


@dataclass(frozen=True, slots=True)
class Writer:
    """Answers in ``media`` for a request whose absolute base URL is ``base`` (no ``/`` at
    its end)."""

    media: str
    base: str

    def url(self, location: str) -> str:
        return self.base + location

    def _respond(
        self,
        lines: Sequence[text.Line],
        doc: Mapping[str, object] | None,
        status: int = 200,
        extra: Mapping[str, str] | None = None,
    ) -> Response:
        headers = {"Server": SERVER, "Accept": ACCEPTS, **(extra or {})}
        if self.media == JSON:
            return _answer(jsonrender.dumps(dict(doc or {})), status, headers, self.media)
        if self.media == HEADERS:
            raw = [(k.lower().encode(), v.encode()) for k, v in text.headers(lines)]
            response = _answer(b"OK\n", status, headers, self.media)
            response.raw_headers.extend(raw)
            return response
        return _answer(text.plain(lines), status, headers, self.media)

    def _no_list(self) -> None:
        if self.media == URI_LIST:
            raise bad("text/uri-list renders collections only (GFD.229 §6)")

    def categories(self, cats: Sequence[Category]) -> Response:
        self._no_list()
        return self._respond(text.categories(cats), jsonrender.categories(cats))

    def entity(self, ent: Entity, status: int = 200) -> Response:
        self._no_list()
        extra = {"Location": self.url(ent.location)} if status == 201 else None
        return self._respond(text.entity(ent), jsonrender.entity(ent), status, extra)

    def created(self, ent: Entity) -> Response:
        """201 with the new entity's location (the header, and in the body for text)."""
        url = self.url(ent.location)
        if self.media == JSON:
            return self.entity(ent, 201)
        if self.media == URI_LIST:
            return _answer(f"{url}\n".encode(), 201, {"Server": SERVER, "Location": url}, URI_LIST)
        return self._respond(text.locations([url]), None, 201, {"Location": url})

    def collection(self, items: Sequence[Entity]) -> Response:
        urls = [self.url(e.location) for e in items]
        if self.media == URI_LIST:
            body = "".join(u + "\n" for u in urls).encode()
            return _answer(body, 200, {"Server": SERVER}, URI_LIST)
        return self._respond(text.locations(urls), jsonrender.collection(items))

    def done(self) -> Response:
        """200 with nothing to tell (a delete)."""
        if self.media == URI_LIST:
            return _answer(b"", 200, {"Server": SERVER}, URI_LIST)
        return self._respond([], {})

    def error(self, status: int, message: str, allow: Sequence[str] = ()) -> Response:
        extra: dict[str, str] = {}
        if allow:
            extra["Allow"] = ", ".join(allow)
        if status == 401:
            extra["WWW-Authenticate"] = 'Basic realm="tashi", Bearer realm="tashi"'
        headers = {"Server": SERVER, "Accept": ACCEPTS, **extra}
        if self.media == JSON:
            doc = {"error": {"status": status, "message": message}}
            return _answer(jsonrender.dumps(doc), status, headers, JSON)
        media = PLAIN if self.media == URI_LIST else self.media
        return _answer(f"{message}\n".encode(), status, headers, media)
