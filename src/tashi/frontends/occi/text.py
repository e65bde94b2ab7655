"""OCCI's text renderings (GFD.229): ``text/plain`` (and ``text/occi+plain``), every line in
the body; ``text/occi``, the same lines as HTTP headers and ``OK`` as the body; and
``text/uri-list`` for collections.

A rendering is first a list of ``(name, value)`` lines (``Category``, ``Link``,
``X-OCCI-Attribute``, ``X-OCCI-Location``) written by the ABNF of GFD.229 §3; ``parse`` reads
such lines (from a body or from headers, where one header may carry several values separated
by commas) back into a ``Parsed``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from tashi.frontends.occi.categories import Attribute, Category
from tashi.frontends.occi.entities import Entity, Value
from tashi.frontends.occi.errors import bad
from tashi.frontends.occi.parsed import CategoryRef, LinkRef, Parsed

Line = tuple[str, str]
NAMES = ("Category", "Link", "X-OCCI-Attribute", "X-OCCI-Location")
_TERM = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.]*")
_ATTR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.]*")
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def quote(text: str) -> str:
    """A quoted-string of RFC 7230: backslash before ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def value(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    return quote(v)


def _attribute_def(a: Attribute) -> str:
    props = [p for p, on in (("immutable", not a.mutable), ("required", a.required)) if on]
    return a.name + ("{" + " ".join(props) + "}" if props else "")


def category(cat: Category, *, full: bool = True) -> str:
    """A ``Category`` value; ``full``: with title, rel, location, attributes and actions."""
    parts = [cat.term, f"scheme={quote(cat.scheme)}", f"class={quote(cat.cls)}"]
    if full:
        if cat.title:
            parts.append(f"title={quote(cat.title)}")
        rel = cat.parent or (cat.depends[0] if cat.depends else None)
        if rel:
            parts.append(f"rel={quote(rel)}")
        if cat.location:
            parts.append(f"location={quote(cat.location)}")
        if cat.attributes:
            parts.append(f"attributes={quote(' '.join(map(_attribute_def, cat.attributes)))}")
        if cat.actions:
            parts.append(f"actions={quote(' '.join(cat.actions))}")
    return "; ".join(parts)


def categories(cats: Iterable[Category]) -> list[Line]:
    return [("Category", category(c)) for c in cats]


def locations(urls: Iterable[str]) -> list[Line]:
    return [("X-OCCI-Location", u) for u in urls]


def _link(link: Entity) -> str:
    assert link.target is not None
    cats = " ".join(c.id for c in (link.kind, *link.mixins))
    parts = [
        f"<{link.target[0]}>",
        f"rel={quote(link.target[1])}",
        f"self={quote(link.location)}",
        f"category={quote(cats)}",
    ]
    parts += [f"{k}={value(v)}" for k, v in link.attributes.items()]
    return "; ".join(parts)


def entity(ent: Entity) -> list[Line]:
    """A resource or link instance (GFD.229 §4.1): its categories, links, action links and
    attributes."""
    lines = [("Category", category(ent.kind, full=False))]
    lines += [("Category", category(m, full=False)) for m in ent.mixins]
    lines += [("Link", _link(link)) for link in ent.links]
    lines += [("Link", f"<{ent.location}?action={a.term}>; rel={quote(a.id)}") for a in ent.actions]
    lines += [("X-OCCI-Attribute", f"{k}={value(v)}") for k, v in ent.attributes.items()]
    return lines


def plain(lines: Sequence[Line]) -> bytes:
    return "".join(f"{n}: {v}\n" for n, v in lines).encode()


def headers(lines: Sequence[Line]) -> list[tuple[str, str]]:
    """``text/occi``: one header per name, its values separated by commas (GFD.229 §5
    recommends it)."""
    grouped: dict[str, list[str]] = {}
    for name, val in lines:
        grouped.setdefault(name, []).append(val)
    return [(name, ", ".join(vals)) for name, vals in grouped.items()]


# --- parsing ----------------------------------------------------------------------------


def split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside quoted strings (and ``<…>``)."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = angled = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"' and not angled:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angled = True
        elif ch == ">" and not quoted:
            angled = False
        elif ch == sep and not quoted and not angled:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if quoted:
        raise bad(f"an unterminated quoted string in {text!r}")
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def unquote(text: str, what: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise bad(f"{what} must be a quoted string, not {text!r}")
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def parse_value(text: str, name: str) -> Value:
    text = text.strip()
    if text.startswith('"'):
        return unquote(text, f"the value of {name}")
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.fullmatch(text):
        number = float(text)
        return (
            int(number)
            if number.is_integer() and "." not in text and "e" not in text.lower()
            else number
        )
    raise bad(f"the value of {name} ({text!r}) must be a quoted string, a number, true or false")


def _params(parts: Sequence[str], what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in parts:
        key, eq, val = part.partition("=")
        if not eq:
            raise bad(f"{what}: {part!r} is not name=value")
        found[key.strip()] = val.strip()
    return found


def _parts(text: str, what: str) -> tuple[str, list[str]]:
    parts = split(text, ";")
    if not parts:
        raise bad(f"an empty {what}")
    return parts[0], parts[1:]


def parse_category(text: str) -> CategoryRef:
    term, rest = _parts(text, "Category")
    params = _params(rest, f"Category {term}")
    if not _TERM.fullmatch(term):
        raise bad(f"Category: {term!r} is not a term")
    if "scheme" not in params:
        raise bad(f"Category {term}: scheme is missing")
    cls = params.get("class", "")
    cls = unquote(cls, "class") if cls.startswith('"') else cls
    if cls not in ("", "kind", "mixin", "action"):
        raise bad(f"Category {term}: class must be kind, mixin or action, not {cls!r}")
    more = {k: unquote(params[k], k) if params[k].startswith('"') else params[k] for k in params}
    return CategoryRef(
        term,
        unquote(params["scheme"], "scheme"),
        cls,
        title=more.get("title", ""),
        location=more.get("location", ""),
        rel=tuple(more.get("rel", "").split()),
    )


def parse_attribute(text: str) -> tuple[str, Value]:
    name, eq, val = text.partition("=")
    name = name.strip()
    if not eq or not _ATTR_NAME.fullmatch(name):
        raise bad(f"X-OCCI-Attribute: {text!r} is not name=value")
    return name, parse_value(val, name)


def parse_link(text: str) -> LinkRef:
    target, rest = _parts(text, "Link")
    if not (target.startswith("<") and target.endswith(">")):
        raise bad(f"Link: {text!r} does not start with <target>")
    params = _params(rest, "Link")
    kind = unquote(params.pop("category"), "category").split()[0] if "category" in params else ""
    params.pop("rel", None)
    params.pop("self", None)
    attrs = {k: parse_value(v, k) for k, v in params.items()}
    return LinkRef(target[1:-1].strip(), kind, attrs)


def parse(lines: Iterable[Line]) -> Parsed:
    """The lines of a text rendering (names in any case; a value may hold several, separated
    by commas)."""
    cats: list[CategoryRef] = []
    attrs: dict[str, Value] = {}
    links: list[LinkRef] = []
    locs: list[str] = []
    for name, raw in lines:
        key = name.strip().lower()
        for item in split(raw, ","):
            if key == "category":
                cats.append(parse_category(item))
            elif key == "x-occi-attribute":
                k, v = parse_attribute(item)
                attrs[k] = v
            elif key == "link":
                links.append(parse_link(item))
            elif key == "x-occi-location":
                locs.append(item)
    return Parsed(tuple(cats), attrs, tuple(links), tuple(locs))


def body_lines(body: bytes) -> list[Line]:
    """The lines of a ``text/plain`` body; ``400`` for one that is not ``Name: value``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("the body is not UTF-8") from None
    lines: list[Line] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        name, colon, val = raw.partition(":")
        if not colon or name.strip().lower() not in {n.lower() for n in NAMES}:
            raise bad(f"{raw[:80]!r} is not a line of OCCI's text rendering (Name: value)")
        lines.append((name, val))
    return lines
