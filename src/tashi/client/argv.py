"""The command-line grammar of ``tashi VERB``: ``--option value`` pairs, as the original had.

Also ``--option=value``, bare flags (``--force``), ``--json``, ``--show-<col>``/``--hide-<col>``
(``--show-all``/``--hide-all``), ``--help`` and ``--examples``. Option names match in any case.
Unlike the original, giving an option twice is an error (it silently kept the last), so is an
option without its value or a value without an option. Values are converted by each ``Option``'s
``parse``; every problem is a ``UsageError`` naming the option. ``cli.py`` calls ``parse``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from tashi.client.errors import UsageError
from tashi.client.tables import View, check_views
from tashi.client.verbs.base import Args, Option, Verb
from tashi.domain.errors import InvalidInput, InvalidState

HelpKind = Literal["help", "examples"]


def wants_help(tokens: Sequence[str]) -> HelpKind | None:
    """``--help``/``-h`` or ``--examples`` anywhere after the verb: show that and do nothing."""
    lowered = {t.lower() for t in tokens}
    if lowered & {"--help", "-h"}:
        return "help"
    if "--examples" in lowered:
        return "examples"
    return None


def _index(verb: Verb) -> dict[str, Option]:
    return {n.lower(): opt for opt in verb.options for n in (opt.name, *opt.aliases)}


def parse(verb: Verb, tokens: Sequence[str]) -> Args:
    """The ``Args`` of ``verb`` from the tokens after its name."""
    options = _index(verb)
    given: dict[str, str | bool] = {}
    views: list[View] = []
    as_json = False
    rest = list(tokens)
    while rest:
        token = rest.pop(0)
        key, eq, inline = token.partition("=")
        low = key.lower()
        if not token.startswith("--") or len(token) == 2:
            raise UsageError(f"unexpected argument {token!r}: {verb.name} takes --option value")
        if low == "--json" and not eq:
            as_json = _once(as_json, "--json")
        elif low.startswith(("--show-", "--hide-")) and not eq:
            views.append(_view(verb, low, key))
        elif low[2:] in options:
            opt = options[low[2:]]
            _store(given, opt, _value(opt, key, inline if eq else None, rest, options))
        else:
            raise UsageError(f"{verb.name} has no option {key}{_known(verb)}")
    if verb.table is not None:
        check_views(verb.table, views)
    return Args(values=_convert(verb, given), views=tuple(views), as_json=as_json)


def _once(seen: bool, name: str) -> bool:
    if seen:
        raise UsageError(f"{name} is given twice")
    return True


def _view(verb: Verb, low: str, key: str) -> View:
    if verb.table is None:
        raise UsageError(f"{verb.name} prints no table, so {key} does not apply")
    if len(low) == len("--show-"):
        raise UsageError(f"{key} needs a column name, e.g. {key}name")
    return (low.startswith("--show-"), key[len("--show-") :])


def _value(
    opt: Option, key: str, inline: str | None, rest: list[str], options: dict[str, Option]
) -> str | bool:
    if opt.flag:
        if inline is not None:
            raise UsageError(f"--{opt.name} takes no value")
        return True
    if inline is not None:
        return inline
    if not rest or _is_option(rest[0], options):
        raise UsageError(f"{key} needs a value ({opt.metavar})")
    return rest.pop(0)


def _is_option(token: str, options: dict[str, Option]) -> bool:
    low = token.lower().partition("=")[0]
    special = low in ("--json", "--help", "--examples") or low.startswith(("--show-", "--hide-"))
    return special or (low.startswith("--") and low[2:] in options)


def _store(given: dict[str, str | bool], opt: Option, value: str | bool) -> None:
    if opt.name in given:
        names = " or ".join(f"--{n}" for n in (opt.name, *opt.aliases))
        raise UsageError(f"{names} is given twice; give it once (lists are comma-separated)")
    given[opt.name] = value


def _convert(verb: Verb, given: dict[str, str | bool]) -> dict[str, Any]:
    missing = [f"--{o.name}" for o in verb.options if o.required and o.name not in given]
    if missing:
        raise UsageError(
            f"{verb.name} needs {' and '.join(missing)} (see tashi {verb.name} --help)"
        )
    values: dict[str, Any] = {}
    for opt in verb.options:
        raw = given.get(opt.name)
        default = False if opt.flag else opt.default
        values[opt.name] = default if raw is None else _parse_one(opt, raw)
    return values


def _parse_one(opt: Option, raw: str | bool) -> Any:
    if isinstance(raw, bool):
        return raw
    try:
        return opt.parse(raw)
    except (InvalidInput, InvalidState) as exc:
        raise UsageError(f"--{opt.name}: {exc.message}") from None


def _known(verb: Verb) -> str:
    names = " ".join(f"--{o.name}" for o in verb.options)
    return f"; its options: {names}" if names else "; it takes no options"
