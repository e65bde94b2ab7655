"""Fixtures for the tests that boot the tiny guest: the tiny image, built once.

``tiny_image`` builds ``var/images/tashi-tiny.qcow2`` with ``tashi-image``'s builder, which does
nothing when ``make image`` (or an earlier run) already built it with the same recipe, so a clean
machine builds it and every later run reuses it. Tests only ever boot it through an overlay.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tashi.guestimage import builder

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO / "var" / "images"


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    lines: list[str] = []
    result = builder.build(builder.BuildOptions(out_dir=IMAGE_DIR), say=lines.append)
    assert builder.is_complete(result.image), "\n".join(lines)
    return result.image
