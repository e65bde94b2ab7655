"""What node managers leave outside the cluster's records, ended and removed by ``rm N`` and
``stop``: the watchdog named by ``watchdog.pid`` (only when that pid runs the watchdog's code)
and the boot-slot directory (only when no process has a slot open). No root, no cluster: a
stand-in process whose command line names ``tashi.nodemanager.watchdog``, and a temporary
directory in place of ``/run/tashi/boot-slots``."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.devcluster import processes, strays

SLEEPER = "import sys, time; time.sleep(600)"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line carries the watchdog's module name; stopped at the end."""
    process = subprocess.Popen([sys.executable, "-c", SLEEPER, "-m", "tashi.nodemanager.watchdog"])
    try:
        yield process
    finally:
        processes.stop_child(process)


def test_the_watchdog_named_by_its_pid_file_is_killed(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    (tmp_path / "watchdog.pid").write_text(f"{sleeper.pid}\n")
    assert strays.kill_watchdog(tmp_path) == sleeper.pid
    assert not processes.alive(sleeper.pid)  # gone (and reaped: it was our child)


def test_a_pid_file_naming_another_program_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", SLEEPER])
    try:
        (tmp_path / "watchdog.pid").write_text(str(other.pid))
        assert strays.kill_watchdog(tmp_path) is None
        assert other.poll() is None
    finally:
        processes.stop_child(other)


def test_no_pid_file_or_a_bad_one_is_nothing_to_kill(tmp_path: Path) -> None:
    assert strays.kill_watchdog(tmp_path) is None
    (tmp_path / "watchdog.pid").write_text("not a pid")
    assert strays.kill_watchdog(tmp_path) is None


def test_boot_slots_nobody_holds_are_removed_with_an_empty_parent(tmp_path: Path) -> None:
    slots = tmp_path / "tashi" / "boot-slots"
    slots.mkdir(parents=True)
    (slots / "slot-0").touch()
    assert strays.remove_boot_slots(slots) == []
    assert not (tmp_path / "tashi").exists()


def test_boot_slots_someone_holds_stay(tmp_path: Path) -> None:
    slots = tmp_path / "boot-slots"
    slots.mkdir()
    (tmp_path / "other").touch()
    fd = os.open(slots / "slot-0", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert strays.remove_boot_slots(slots) == []
        assert (slots / "slot-0").exists()
    finally:
        os.close(fd)
    assert strays.remove_boot_slots(slots) == []
    assert not slots.exists()
    assert tmp_path.exists()  # a parent with other files stays


def test_boot_slots_are_left_over_only_while_no_node_manager_runs(tmp_path: Path) -> None:
    slots = tmp_path / "tashi" / "boot-slots"
    program = f"/tashi-nm-test-{os.getpid()}"  # no real node manager's
    mark = program.encode() + b"\0"
    assert strays.boot_slots_left(slots, mark) == []  # nothing there
    slots.mkdir(parents=True)
    (slots / "slot-0").touch()
    assert strays.boot_slots_left(slots, mark) == [str(slots)]
    node_manager = subprocess.Popen([sys.executable, "-c", SLEEPER, program])
    cmdline = Path(f"/proc/{node_manager.pid}/cmdline")
    try:  # a command line reads empty for a moment after the exec
        processes.wait_for("its command line", lambda: mark in cmdline.read_bytes(), 10.0)
        assert strays.boot_slots_left(slots, mark) == []  # it may use them
    finally:
        processes.stop_child(node_manager)
    assert strays.remove_boot_slots(slots) == []
    (tmp_path / "tashi").mkdir()
    assert strays.boot_slots_left(slots, mark) == [f"{tmp_path / 'tashi'} (empty)"]
