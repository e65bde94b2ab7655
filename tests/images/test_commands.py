"""The builder's one seam to foreign programs: every failure is a BackendFailure that says why."""

from __future__ import annotations

import subprocess

import pytest

from tashi.domain.errors import BackendFailure
from tashi.images.commands import require, run


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
