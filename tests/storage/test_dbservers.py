"""The database-server helpers of ``tests/fixtures/dbservers.py`` that benchmarks reuse: a missing
server fails loudly with what to do, and ``stop()`` ends the server by its pid and leaves nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures import dbservers


@pytest.mark.parametrize(
    ("start", "attribute"),
    [(dbservers.start_postgres, "PG_BIN"), (dbservers.start_mariadb, "MARIADBD")],
)
def test_missing_server_binaries_say_to_run_make_test(
    start: object, attribute: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(dbservers, attribute, tmp_path / "not-installed")
    with pytest.raises(dbservers.ServerMissing, match="make test"):
        start()  # type: ignore[operator]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_a_stopped_server_is_gone_with_its_files() -> None:
    server = dbservers.start_postgres()
    try:
        url = server.create_database()
        assert url.startswith("postgresql+psycopg://tashi:")
        assert server.accepts_connections()
    finally:
        server.stop()
    assert server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert not server.root.exists()
    assert not server.accepts_connections()
