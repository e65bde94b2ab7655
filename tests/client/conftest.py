"""Fixtures for the client tests: a CLI runner that keeps the developer's own config out.

``cli`` runs ``tashi`` in-process (``tashi.client.cli.run``) with HOME and the working directory
in a temporary directory and every TASHI_* variable removed, so ``~/.tashi`` and ``./etc`` of
the machine cannot leak in; it returns the exit status and what went to stdout and stderr.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tashi.client.cli import run


@dataclass(frozen=True)
class Ran:
    status: int
    out: str
    err: str


Cli = Callable[..., Ran]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TASHI_"):
            monkeypatch.delenv(name)
    return home


@pytest.fixture
def cli(isolated: Path) -> Cli:
    def invoke(*argv: str, prog: str = "tashi") -> Ran:
        out, err = io.StringIO(), io.StringIO()
        status = run(list(argv), prog=prog, out=out, err=err)
        return Ran(status, out.getvalue(), err.getvalue())

    return invoke
