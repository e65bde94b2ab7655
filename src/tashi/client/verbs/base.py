"""What a CLI verb is: its options, its help and examples, and the function that runs it.

Each verb module (``instances.py``, ``lifecycle.py``, ``hosts.py``, …) declares ``VERBS``, a tuple
of ``Verb``; ``verbs/__init__.py`` gathers them. ``argv.py`` turns a command line into ``Args``
using the ``Option`` declarations, ``helptext.py`` prints them, and ``cli.py`` calls ``run`` with
a ``Context`` (the connection, made only when a verb needs it) and prints the ``Output``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from tashi.client import parsing
from tashi.client.sdk import TashiClient
from tashi.client.tables import TableSpec, View, choose_columns, render
from tashi.domain.errors import TashiError


@dataclass(frozen=True, slots=True)
class Option:
    """``--name VALUE`` (or a bare ``--name`` when ``flag``); ``parse`` converts the text."""

    name: str
    help: str
    parse: Callable[[str], object] = str
    required: bool = False
    default: object = None  # the value when omitted; shown in --help unless None
    metavar: str = "VALUE"
    aliases: tuple[str, ...] = ()  # other spellings (the original's --dst, SLA@SOI's --userId)
    flag: bool = False


@dataclass(frozen=True, slots=True)
class Args:
    """The parsed command line of one verb."""

    values: Mapping[str, Any]
    views: Sequence[View] = ()
    as_json: bool = False

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def text(self, name: str) -> str:
        value = self.values[name]
        if not isinstance(value, str):
            raise TypeError(f"--{name} is not text")
        return value

    def maybe_text(self, name: str) -> str | None:
        value = self.values.get(name)
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Output:
    """What a verb printed: ``text`` for people, ``raw`` (JSON-able) for ``--json``.

    ``errors`` are failures of part of the work (one VM of a batch); the CLI prints each on
    stderr and exits with the status of the first. ``notes`` go to stderr as well."""

    raw: Any
    text: str = ""
    errors: tuple[TashiError, ...] = ()
    notes: tuple[str, ...] = ()


class Context:
    """What a running verb may use: the SDK client (connected on first use) and a prompt."""

    def __init__(
        self, connect: Callable[[], TashiClient], ask_secret: Callable[[str], str]
    ) -> None:
        self._connect = connect
        self._client: TashiClient | None = None
        self.ask_secret = ask_secret

    @property
    def client(self) -> TashiClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass(frozen=True, slots=True)
class Verb:
    """One ``tashi VERB``. ``table`` is set for verbs that print a table (for --show/--hide)."""

    name: str
    group: str
    summary: str
    run: Callable[[Context, Args], Output]
    options: tuple[Option, ...] = ()
    description: str = ""
    examples: tuple[str, ...] = ()
    table: TableSpec[Any] | None = None
    aliases: tuple[str, ...] = ()


GROUPS = ("instances", "hosts", "cluster", "admin")
GROUP_TITLES = {
    "instances": "Instances (VMs)",
    "hosts": "Hosts and capacity",
    "cluster": "Networks, users and images",
    "admin": "Administration (admin role)",
}


def dump(value: object) -> Any:
    """A wire model, or a list of them, as plain JSON values (for ``--json``)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    return value


def table_output(spec: TableSpec[Any], records: Sequence[Any], args: Args, raw: Any) -> Output:
    """A table of ``records`` in the columns the user chose; ``raw`` for --json."""
    text = render(spec, records, choose_columns(spec, args.views))
    return Output(raw=raw, text=text)


#: ``--limit``/``--after`` of the listing verbs: one page of the list instead of all of it
PAGE_OPTIONS = (
    Option(
        "limit",
        "Show at most N items: one page (default: every item, read page by page).",
        parsing.parse_count,
        metavar="N",
    ),
    Option(
        "after",
        "Show only items whose id is greater than ID (the last id of the page before).",
        parsing.parse_marker,
        metavar="ID",
    ),
)

_Item = TypeVar("_Item")


def listed(
    args: Args,
    one_page: Callable[[int | None, int | None], list[_Item]],
    every: Callable[[], list[_Item]],
) -> list[_Item]:
    """What a listing verb shows: with ``--limit`` or ``--after`` (``PAGE_OPTIONS``) the page
    they name, one request; without, every item, read page by page (``every``)."""
    after, limit = args.values.get("after"), args.values.get("limit")
    if after is None and limit is None:
        return every()
    return one_page(after, limit)
