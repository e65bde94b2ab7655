"""Fixtures for the guest image tests: the tiny image, built once, and a boot-time report.

``tiny_image`` builds ``var/images/tashi-tiny.qcow2`` with ``tashi-image``'s builder, which does
nothing when ``make image`` (or an earlier run) already built it with the same recipe, so a clean
machine builds it and every later run reuses it. Tests only ever boot it through an overlay.

``boot_times`` collects the measured boot-to-marker times; they are printed at the end of the run
(they are reported, never asserted beyond a generous deadline: see ``guests.BOOT_TIMEOUT``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tashi.images import builder

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO / "var" / "images"

_TIMES: list[tuple[str, float]] = []


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    lines: list[str] = []
    result = builder.build(builder.BuildOptions(out_dir=IMAGE_DIR), say=lines.append)
    assert builder.is_complete(result.image), "\n".join(lines)
    return result.image


@pytest.fixture
def boot_times() -> list[tuple[str, float]]:
    return _TIMES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIMES:
        terminalreporter.section("tiny guest timings (TCG; boot markers are from qemu start)")
        for what, seconds in _TIMES:
            terminalreporter.write_line(f"{what:<48} {seconds:6.2f} s")
