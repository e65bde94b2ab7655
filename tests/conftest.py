"""Fixtures shared by every test package.

Database servers (``tests/fixtures/dbservers.py``): ``postgres_server`` and ``mariadb_server``
(one real server per session, started on first use), ``fresh_database(kind)`` and
``db_url(kind)`` (a new empty database of kind ``"sqlite"``, ``"postgres"`` or ``"mariadb"``),
``own_server`` (a server of the test's own, of each kind in turn, which it may halt and restart).

The guests (``tests/fixtures/images.py``): ``tiny_image`` and ``debian_image`` (Debian with
cloud-init and OpenSSH), each built once per session when a test asks for it.
"""

from __future__ import annotations

import pytest

from tests.fixtures.dbservers import (  # noqa: F401  (imported to register the fixtures)
    db_url,
    fresh_database,
    mariadb_server,
    own_server,
    postgres_server,
)
from tests.fixtures.images import (  # noqa: F401  (imported to register the fixtures)
    debian_image,
    tiny_image,
)

# Warnings of our own code that pyproject's filterwarnings would make errors, not fixed yet, each
# for the one test that meets it: test id -> the filter, and why. Remove an entry with its fix.
KNOWN_WARNINGS: dict[str, str] = {}  # test id -> one filterwarnings entry, with why beside it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        known = KNOWN_WARNINGS.get(item.nodeid)
        if known is not None:
            item.add_marker(pytest.mark.filterwarnings(known))
