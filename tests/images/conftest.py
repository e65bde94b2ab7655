"""Fixtures for the tests that boot the tiny guest: the tiny image, built once
(``tests/fixtures/images.py``, registered for every test package)."""

from __future__ import annotations

from tests.fixtures.images import (  # noqa: F401  (registers the session fixture)
    IMAGE_DIR,
    REPO,
    tiny_image,
)
