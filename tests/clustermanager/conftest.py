"""The real HTTP app of ``tests/api`` (``api``: over the memory fake and SQLite) for the
cluster-manager tests that go through the wire."""

from __future__ import annotations

from tests.api.conftest import api  # noqa: F401  (imported to register the fixture)
