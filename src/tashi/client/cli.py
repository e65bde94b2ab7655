"""``tashi`` and ``tashi-admin``: the command-line client, with the original Tashi verbs.

``tashi VERB [--option value ...]``: finds the verb (``verbs/``, any case), parses its options
(``argv.py``), connects lazily (``session.py``), runs it through the SDK (``sdk.py``) and prints
a table, a sentence or, with ``--json``, the API's answer. This is the client's outermost
boundary: every error becomes one line ``tashi: error: ...`` on stderr and the exit status of
its category (``errors.py``), never a traceback (``TASHI_DEBUG=1`` re-raises unexpected ones).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from tashi import __version__
from tashi.client import argv as grammar
from tashi.client import helptext
from tashi.client.errors import EXIT_INTERRUPTED, UsageError, exit_code
from tashi.client.session import ask_secret, connect
from tashi.client.verbs import ALL_VERBS, find_verb
from tashi.client.verbs.base import Context, Output
from tashi.domain.errors import TashiError


def main(argv: Sequence[str] | None = None) -> int:
    """The ``tashi`` console script."""
    return run(sys.argv[1:] if argv is None else argv, prog="tashi")


def admin_main(argv: Sequence[str] | None = None) -> int:
    """The ``tashi-admin`` console script: the same verbs (admin ones need the admin role)."""
    return run(sys.argv[1:] if argv is None else argv, prog="tashi-admin")


def run(
    argv: Sequence[str], *, prog: str, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one command line; the exit status. Never raises (except SystemExit)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        return _dispatch(list(argv), prog, out, err)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except TashiError as exc:
        print(f"{prog}: error: {exc.message}", file=err)
        return exit_code(exc)
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except Exception as exc:  # the outermost boundary: a bug, but still no traceback
        if os.environ.get("TASHI_DEBUG"):
            raise
        print(
            f"{prog}: error: internal error ({type(exc).__name__}: {exc});"
            " run with TASHI_DEBUG=1 for a traceback and please report it",
            file=err,
        )
        return 1


def _dispatch(argv: list[str], prog: str, out: TextIO, err: TextIO) -> int:
    if not argv:
        print(helptext.overview(prog, ALL_VERBS), file=err)
        return 2
    head = argv[0]
    if head.lower() in ("--help", "-h", "help"):
        return _help(argv[1:], prog, out)
    if head == "--version":
        print(f"{prog} {__version__}", file=out)
        return 0
    verb = find_verb(head)
    kind = grammar.wants_help(argv[1:])
    if kind is not None:
        shown = helptext.examples(verb) if kind == "examples" else helptext.verb_help(prog, verb)
        print(shown, file=out)
        return 0
    args = grammar.parse(verb, argv[1:])
    ctx = Context(connect, ask_secret)
    try:
        output = verb.run(ctx, args)
    finally:
        ctx.close()
    return _show(output, args.as_json, prog, out, err)


def _help(rest: list[str], prog: str, out: TextIO) -> int:
    if len(rest) > 1:
        raise UsageError(f"'{prog} help' takes at most one verb")
    text = helptext.verb_help(prog, find_verb(rest[0])) if rest else None
    print(text or helptext.overview(prog, ALL_VERBS), file=out)
    return 0


def _show(output: Output, as_json: bool, prog: str, out: TextIO, err: TextIO) -> int:
    if as_json:
        print(json.dumps(output.raw, indent=2, sort_keys=False), file=out)
    elif output.text:
        print(output.text, file=out)
    out.flush()
    for note in output.notes:
        print(f"{prog}: {note}", file=err)
    for error in output.errors:
        print(f"{prog}: error: {error.message}", file=err)
    return exit_code(output.errors[0]) if output.errors else 0


def _quiet_stdout() -> None:
    """After a closed pipe (``tashi getInstances | head``), keep Python from complaining."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
