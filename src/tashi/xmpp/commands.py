"""What a chat message to ``tashi-xmpp`` asks for: the parsing of SLA@SOI's commands.

Pure functions from a message body to one typed command, or ``InvalidInput`` with a message
that says what was wrong and what is expected (the daemon sends it back as the reply). The
daemon (``control.py``) carries the commands out through the API client; nothing here talks to
anything.

The commands (docs/xmpp.md has examples)::

    createcompute <json>           the SLA@SOI ISM's Compute, verbatim: [compute, categories, links]
                                   (or the compute object alone)
    deletecompute <id>             destroyVm
    adaptcompute <id> <json>       {"cpu_share": N} (adaptCpuShare); memory_size and cpu_cores are
                                   refused: a running VM's memory and cores cannot change in Tashi
    adaptCpuShare --share N --instance ID       the tashi client's SLA@SOI verbs, as they are
    adaptMemoryLimit --limit N --instance ID    (refused, as above)
    registerUser --name N --passwd P [--priority N]
    unregisterUser --userId ID     (or --name N)
    help
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tashi.domain.errors import InvalidInput

#: the longest message body acted upon (the seed's createcompute is about 1.3 kB)
MAX_BODY = 65536

SLA_SCHEME = "#sla"
TEMPLATE_SCHEME = "#templates"
LOCATION_SCHEME = "#locations"


@dataclass(frozen=True, slots=True)
class CreateCompute:
    """``createcompute``: a VM from the ISM's Compute. ``image`` is its ``imageIdentifier``
    (the daemon maps it to a disk); ``sla``, ``template`` and ``location`` are the terms of its
    categories of those schemes (``None`` when absent); ``ism_user`` is its ``userId`` and
    ``resource_id`` its ``resourceId`` (kept as hints, the ISM's own ids)."""

    hostname: str
    memory: int
    cores: int
    image: str
    ism_user: int | None = None
    resource_id: str | None = None
    sla: str | None = None
    template: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteCompute:
    ref: str


@dataclass(frozen=True, slots=True)
class AdaptCompute:
    """Reprovisioning: the new values asked for (``None``: unchanged)."""

    ref: str
    cpu_share: int | None = None
    memory: int | None = None
    cores: int | None = None


@dataclass(frozen=True, slots=True)
class RegisterUser:
    name: str
    password: str = field(repr=False)
    priority: int = 0


@dataclass(frozen=True, slots=True)
class UnregisterUser:
    ref: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


Command = CreateCompute | DeleteCompute | AdaptCompute | RegisterUser | UnregisterUser | Help

USAGE = (
    "commands: createcompute <json> | deletecompute <id> | adaptcompute <id> <json> |"
    " adaptCpuShare --share N --instance ID | registerUser --name N --passwd P [--priority N] |"
    " unregisterUser --userId ID | help (see docs/xmpp.md)"
)


def parse(body: str) -> Command:
    """The command of a message body (``InvalidInput`` saying what is wrong)."""
    if len(body) > MAX_BODY:
        raise InvalidInput(f"the message is longer than {MAX_BODY} characters")
    verb, _, rest = body.strip().partition(" ")
    rest = rest.strip()
    parser = _VERBS.get(verb.lower())
    if parser is None:
        shown = verb[:40] or "(empty)"
        raise InvalidInput(f"unknown command {shown!r}; {USAGE}")
    return parser(rest)


def _help(rest: str) -> Help:
    return Help()


# --- createcompute ------------------------------------------------------------------------


def _create(rest: str) -> CreateCompute:
    if not rest:
        raise InvalidInput(
            "createcompute needs the Compute as JSON: createcompute [{...}, [...], []]"
        )
    try:
        value = json.loads(rest)
    except ValueError as exc:
        raise InvalidInput(f"createcompute: the JSON does not parse: {exc}") from None
    compute, categories = _parts(value)
    terms = _terms(categories)
    return CreateCompute(
        hostname=_text(compute, "hostname"),
        memory=_number(compute, "memory_size"),
        cores=_number(compute, "cpu_cores", default=1),
        image=_text(compute, "imageIdentifier"),
        ism_user=_optional_number(compute, "userId"),
        resource_id=_optional_text(compute, "resourceId"),
        sla=terms.get(SLA_SCHEME),
        template=terms.get(TEMPLATE_SCHEME),
        location=terms.get(LOCATION_SCHEME),
    )


def _parts(value: Any) -> tuple[Mapping[str, Any], Sequence[Any]]:
    """The compute object and the category objects: ``[compute, categories, links]`` (the
    ISM's), or the compute object alone."""
    if isinstance(value, dict):
        return value, ()
    if isinstance(value, list) and value and isinstance(value[0], dict):
        categories = value[1] if len(value) > 1 else []
        if not isinstance(categories, list):
            raise InvalidInput("createcompute: the second element must be the list of categories")
        return value[0], categories
    raise InvalidInput(
        "createcompute: expected [compute, categories, links] or a compute object (JSON)"
    )


def _terms(categories: Sequence[Any]) -> dict[str, str]:
    """Category terms by the end of their scheme (``#sla``, ``#templates``, ``#locations``)."""
    out: dict[str, str] = {}
    for category in categories:
        if not isinstance(category, dict):
            raise InvalidInput("createcompute: every category must be a JSON object")
        scheme, term = category.get("scheme"), category.get("term")
        if not isinstance(scheme, str) or not isinstance(term, str):
            continue  # a category by id only, as in the compute object's own list
        for suffix in (SLA_SCHEME, TEMPLATE_SCHEME, LOCATION_SCHEME):
            if scheme.endswith(suffix):
                out[suffix] = term
    return out


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"createcompute: {key} must be a non-empty string")
    return value


def _optional_text(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _number(obj: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = obj.get(key)
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"createcompute: {key} must be a positive whole number")
    return value


def _optional_number(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- the others ----------------------------------------------------------------------------


def _delete(rest: str) -> DeleteCompute:
    words = rest.split()
    if len(words) != 1:
        raise InvalidInput("deletecompute needs one instance id (or name): deletecompute 12")
    return DeleteCompute(words[0])


def _adapt(rest: str) -> AdaptCompute:
    ref, _, text = rest.partition(" ")
    if not ref or not text.strip():
        raise InvalidInput('adaptcompute needs an id and JSON: adaptcompute 12 {"cpu_share": 2048}')
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"adaptcompute: the JSON does not parse: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput("adaptcompute: expected a JSON object")
    known = {"cpu_share", "memory_size", "cpu_cores"}
    if not known & value.keys():
        raise InvalidInput(f"adaptcompute: give one of {', '.join(sorted(known))}")
    return AdaptCompute(
        ref,
        cpu_share=_adapt_value(value, "cpu_share"),
        memory=_adapt_value(value, "memory_size"),
        cores=_adapt_value(value, "cpu_cores"),
    )


def _adapt_value(value: Mapping[str, Any], key: str) -> int | None:
    if key not in value:
        return None
    return _number(value, key)


def _options(verb: str, rest: str, names: Sequence[str]) -> dict[str, str]:
    """``--name value`` pairs (shell quoting), each of ``names`` at most once."""
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidInput(f"{verb}: {exc}") from None
    out: dict[str, str] = {}
    if len(words) % 2:
        raise InvalidInput(f"{verb}: expected --option value pairs")
    for flag, value in zip(words[::2], words[1::2], strict=True):
        name = flag.removeprefix("--")
        if not flag.startswith("--") or name not in names:
            raise InvalidInput(f"{verb}: unknown option {flag!r} (known: --{' --'.join(names)})")
        if name in out:
            raise InvalidInput(f"{verb}: --{name} given twice")
        out[name] = value
    return out


def _int(verb: str, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{verb}: --{name} must be a whole number, not {value!r}") from None


def _adapt_share(rest: str) -> AdaptCompute:
    opts = _options("adaptCpuShare", rest, ("share", "instance"))
    if set(opts) != {"share", "instance"}:
        raise InvalidInput("adaptCpuShare needs --share N --instance ID")
    return AdaptCompute(opts["instance"], cpu_share=_int("adaptCpuShare", "share", opts["share"]))


def _adapt_memory(rest: str) -> AdaptCompute:
    opts = _options("adaptMemoryLimit", rest, ("limit", "instance"))
    if set(opts) != {"limit", "instance"}:
        raise InvalidInput("adaptMemoryLimit needs --limit MB --instance ID")
    return AdaptCompute(opts["instance"], memory=_int("adaptMemoryLimit", "limit", opts["limit"]))


def _register(rest: str) -> RegisterUser:
    opts = _options("registerUser", rest, ("name", "passwd", "priority"))
    if "name" not in opts or "passwd" not in opts:
        raise InvalidInput("registerUser needs --name N --passwd P (and may have --priority N)")
    priority = _int("registerUser", "priority", opts.get("priority", "0"))
    return RegisterUser(opts["name"], opts["passwd"], priority)


def _unregister(rest: str) -> UnregisterUser:
    opts = _options("unregisterUser", rest, ("userId", "name"))
    if len(opts) != 1:
        raise InvalidInput("unregisterUser needs --userId ID (or --name N)")
    return UnregisterUser(next(iter(opts.values())))


_VERBS: dict[str, Callable[[str], Command]] = {
    "createcompute": _create,
    "deletecompute": _delete,
    "adaptcompute": _adapt,
    "adaptcpushare": _adapt_share,
    "adaptmemorylimit": _adapt_memory,
    "registeruser": _register,
    "unregisteruser": _unregister,
    "help": _help,
}
