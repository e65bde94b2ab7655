"""Fixtures of the virtual-cluster tests: the tiny guest image (built once, reused after), the
end-to-end tests' fixture."""

from __future__ import annotations

from tests.e2e.conftest import tiny_image  # noqa: F401  (imported to register the fixture)
