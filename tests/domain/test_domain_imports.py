"""The domain imports nothing of ours but itself (style.md: "domain imports nothing of ours").

import-linter checks this against a list of packages; this test needs no list, so a package added
later (nodeapi/, vmm/, ...) is covered the day it appears.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tashi.domain

DOMAIN = Path(tashi.domain.__file__).parent
MODULES = sorted(DOMAIN.rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports"
            names.add(node.module or "")
    return names


def test_there_are_domain_modules() -> None:
    assert len(MODULES) >= 5


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_domain_imports_only_the_domain(path: Path) -> None:
    ours = {name for name in imported(path) if name == "tashi" or name.startswith("tashi.")}
    outside = {name for name in ours if not name.startswith("tashi.domain")}
    assert not outside, f"{path.name} imports {sorted(outside)}"
