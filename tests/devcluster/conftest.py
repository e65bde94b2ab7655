"""Fixtures of the virtual-cluster tests: the tiny guest image (built once, reused after)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tashi.images import builder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    lines: list[str] = []
    result = builder.build(builder.BuildOptions(out_dir=REPO / "var" / "images"), say=lines.append)
    assert builder.is_complete(result.image), "\n".join(lines)
    return result.image
