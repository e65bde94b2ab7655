"""Fixtures for the guest image tests: the tiny image (``tests.images.conftest``, shared with the
tests that boot it) and a boot-time report; ``debian_image`` comes from ``tests/conftest.py``.

``boot_times`` collects the measured boot-to-marker times; they are printed at the end of the run
(they are reported, never asserted beyond a generous deadline: ``tests.images.guests``'
``BOOT_TIMEOUT``).
"""

from __future__ import annotations

import pytest

from tests.images.conftest import tiny_image  # noqa: F401  (registers the session fixture)

_TIMES: list[tuple[str, float]] = []


@pytest.fixture
def boot_times() -> list[tuple[str, float]]:
    return _TIMES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIMES:
        terminalreporter.section("guest timings (TCG; boot markers are from qemu start)")
        for what, seconds in _TIMES:
            terminalreporter.write_line(f"{what:<48} {seconds:6.2f} s")
