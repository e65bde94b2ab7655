"""The text of ``tashi --help``, ``tashi VERB --help`` and ``tashi VERB --examples``.

Everything is generated from the verb declarations (``verbs/``), so the help cannot drift from
what the parser accepts. ``docs/client.md`` is the long form; ``cli.py`` prints these.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from tashi.client.errors import EXIT_CODES
from tashi.client.tables import TableSpec
from tashi.client.verbs.base import GROUP_TITLES, GROUPS, Option, Verb

WIDTH = 79


def overview(prog: str, verbs: Sequence[Verb]) -> str:
    """All verbs, grouped, one line each."""
    width = max(len(v.name) for v in verbs) + 2
    lines = [
        f"usage: {prog} VERB [--option value ...] [--json] [--show-COL] [--hide-COL]",
        f"       {prog} VERB --help | --examples",
        "",
        "Tashi's client: manage VM instances on the cluster. Verbs are case-insensitive.",
    ]
    for group in GROUPS:
        lines += ["", f"{GROUP_TITLES[group]}:"]
        for verb in (v for v in verbs if v.group == group):
            also = f" (also: {', '.join(verb.aliases)})" if verb.aliases else ""
            lines.append(f"  {verb.name.ljust(width)}{verb.summary}{also}")
    lines += ["", _config_note(), "", exit_statuses()]
    return "\n".join(lines)


def _config_note() -> str:
    return _wrap(
        "The cluster manager's address and your credentials come from ~/.tashi/Client.cfg"
        " ([Client] clusterManagerHost/clusterManagerPort, [AccessClusterManager]"
        " username/password or token), TASHI_CONFIG=<file>, or the environment variables"
        " TASHI_CM_HOST, TASHI_CM_PORT, TASHI_USER, TASHI_PASSWORD, TASHI_TOKEN.",
        "",
    )


def exit_statuses() -> str:
    table = sorted((status, meaning) for _, status, meaning in EXIT_CODES)
    rows = [f"  {status:>3}  {meaning}" for status, meaning in table]
    return "\n".join(["exit status:", "    0  success", *rows, "  130  interrupted (Ctrl-C)"])


def usage(prog: str, verb: Verb) -> str:
    parts = [f"{prog} {verb.name}"]
    for opt in verb.options:
        text = f"--{opt.name}" if opt.flag else f"--{opt.name} {opt.metavar}"
        parts.append(text if opt.required else f"[{text}]")
    parts.append("[--json]")
    if verb.table is not None:
        parts.append("[--show-COL] [--hide-COL]")
    return _wrap(" ".join(parts), "usage: ", "       ")


def verb_help(prog: str, verb: Verb) -> str:
    """Usage, description, every option with its default, columns and examples."""
    lines = [usage(prog, verb), "", _wrap(verb.description or verb.summary, "")]
    if verb.aliases:
        lines += ["", f"Also called: {', '.join(verb.aliases)}."]
    lines += ["", "options:"]
    lines += [_option_line(opt) for opt in verb.options]
    lines.append(_entry("--json", "Print the cluster manager's answer as JSON instead."))
    if verb.table is not None:
        lines += ["", _columns(verb.table)]
    lines += ["", examples(verb)]
    return "\n".join(lines)


def _option_line(opt: Option) -> str:
    head = f"--{opt.name}" if opt.flag else f"--{opt.name} {opt.metavar}"
    notes = [opt.help]
    if opt.required:
        notes.append("Required.")
    elif opt.default is not None and not opt.flag:
        notes.append(f"Default: {opt.default}.")
    if opt.aliases:
        notes.append("Also spelled " + ", ".join(f"--{a}" for a in opt.aliases) + ".")
    return _entry(head, " ".join(notes))


def _entry(head: str, text: str) -> str:
    indent = " " * 28
    if len(head) < 25:
        return _wrap(text, f"  {head}".ljust(28), indent)
    return f"  {head}\n" + _wrap(text, indent)


def _columns(table: TableSpec[Any]) -> str:
    extra = [n for n in table.names() if n not in table.default]
    text = (
        f"Columns shown: {' '.join(table.default)}."
        + (f" Others: {' '.join(extra)}." if extra else "")
        + " --show-COL adds a column, --hide-COL removes one, --show-all and --hide-all"
        " start from all or none; they apply in the order given. Rows are sorted by the"
        " first column."
    )
    return "table:\n" + _wrap(text, "  ", "  ")


def examples(verb: Verb) -> str:
    return "\n".join(["examples:", *(f"  {e}" for e in verb.examples)])


def _wrap(text: str, first: str, rest: str | None = None) -> str:
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=first,
        subsequent_indent=first if rest is None else rest,
        break_on_hyphens=False,
        break_long_words=False,
    )
