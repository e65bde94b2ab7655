"""Text tables as the original ``tashi-client`` printed them, and ``--show-<col>``/``--hide-<col>``.

A ``TableSpec`` names every column a record type can show (the ``--show-all`` order) and the
default view. ``choose_columns`` applies the user's ``--show-``/``--hide-`` options in the order
given, as the original did (``--hide-all --show-name`` leaves only ``name``). ``render`` sorts the
rows by the first column and aligns them under a header line and a line of dashes. The specs of
each noun live with its verbs (``verbs/``); this module knows no record type.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from tashi.client.errors import UsageError

R = TypeVar("R")

#: a ``--show-x``/``--hide-x`` option: (True for show, column name or "all")
View = tuple[bool, str]


@dataclass(frozen=True, slots=True)
class Column(Generic[R]):
    name: str
    get: Callable[[R], object]


def attributes(*names: str) -> tuple[Column[Any], ...]:
    """Columns that each show the record's attribute of the same name."""
    return tuple(Column(name, operator.attrgetter(name)) for name in names)


@dataclass(frozen=True, slots=True)
class TableSpec(Generic[R]):
    """The columns of one kind of record, and the ones shown unless the user says otherwise."""

    columns: tuple[Column[R], ...]
    default: tuple[str, ...]

    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column[R]:
        for col in self.columns:
            if col.name.lower() == name.lower():
                return col
        raise UsageError(f"there is no column {name!r}; columns: {' '.join(self.names())}")


def choose_columns(spec: TableSpec[R], views: Sequence[View]) -> list[str]:
    """The columns to print: the default view changed by each ``--show-``/``--hide-`` in turn."""
    shown = list(spec.default)
    for show, name in views:
        if name.lower() == "all":
            shown = spec.names() if show else []
            continue
        col = spec.column(name).name
        if show and col not in shown:
            shown.append(col)
        elif not show and col in shown:
            shown.remove(col)
    return shown


def check_views(spec: TableSpec[R], views: Sequence[View]) -> None:
    """Refuse unknown column names before anything is sent to the cluster manager."""
    choose_columns(spec, views)


def render(spec: TableSpec[R], records: Sequence[R], columns: Sequence[str]) -> str:
    """An aligned table: header, dashes, one line per record sorted by the first column."""
    cols = [spec.column(name) for name in columns]
    if not cols:
        return ""
    if records:
        first = cols[0].get
        records = sorted(records, key=lambda r: _sort_key(first(r)))
    cells = [[c.name for c in cols]] + [[cell(c.get(r)) for c in cols] for r in records]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = [_line(cells[0], widths), _line(["-" * w for w in widths], widths)]
    lines += [_line(row, widths) for row in cells[1:]]
    return "\n".join(lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _sort_key(value: object) -> tuple[int, float, str]:
    """None first, then numbers in numeric order, then everything else as text."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, bool):
        return (2, 0.0, str(value))
    if isinstance(value, int | float):
        return (1, float(value), "")
    return (2, 0.0, cell(value))


def cell(value: object) -> str:
    """How one value reads in a table cell (no spaces inside lists, so ``awk`` still works)."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value) or "-"
    return str(value)


def human_size(size: int) -> str:
    """Bytes in the original's human-readable form: ``1.74G``, ``512.00K``, ``300B``."""
    if size < 1024:
        return f"{size}B"
    value = float(size)
    for unit in "KMGTP":
        value /= 1024
        if value < 1024 or unit == "P":
            break
    return f"{value:.2f}{unit}"
