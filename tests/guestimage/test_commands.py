"""The builder's one seam to foreign programs: every failure is a BackendFailure that says why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tashi.domain.errors import BackendFailure
from tashi.guestimage.commands import require, run, run_logged


def test_output_is_returned() -> None:
    assert run(["echo", "hello"]) == "hello\n"


def test_a_failing_program_reports_its_status_and_error_output() -> None:
    with pytest.raises(BackendFailure, match=r"exit status 3: boom") as info:
        run(["sh", "-c", "echo boom >&2; exit 3"])
    assert isinstance(info.value.__cause__, subprocess.CalledProcessError)


def test_a_missing_program_names_what_installs_it() -> None:
    with pytest.raises(BackendFailure, match="not installed"):
        run(["/nonexistent/tashi-no-such-program"])
    with pytest.raises(BackendFailure, match="Debian package qemu-utils"):
        require("/nonexistent/qemu-img")


def test_a_hanging_program_times_out() -> None:
    with pytest.raises(BackendFailure, match="took longer than"):
        run(["sleep", "10"], timeout=0.2)


def test_a_logged_run_writes_both_streams_to_its_log_and_ticks(tmp_path: Path) -> None:
    ticks: list[float] = []
    log = tmp_path / "build.log"
    script = "echo out; echo err >&2; sleep 0.5; echo done"
    run_logged(["sh", "-c", script], log, tick=ticks.append, every=0.1)
    assert log.read_text().split() == ["out", "err", "done"]
    assert len(ticks) >= 2 and ticks == sorted(ticks) and all(t > 0 for t in ticks)


def test_a_failing_logged_run_reports_the_end_of_its_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(BackendFailure, match=r"exit status 2 .*build.log.*: compile error"):
        run_logged(["sh", "-c", "echo compile error; exit 2"], log)


def test_a_hanging_logged_run_is_killed_at_its_timeout(tmp_path: Path) -> None:
    with pytest.raises(BackendFailure, match="took longer than"):
        run_logged(["sleep", "10"], tmp_path / "log", timeout=0.3, every=0.1)


def test_a_logged_run_of_a_missing_program_names_it(tmp_path: Path) -> None:
    with pytest.raises(BackendFailure, match="not installed"):
        run_logged(["/nonexistent/tashi-no-such-program"], tmp_path / "log")
