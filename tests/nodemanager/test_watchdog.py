"""The node manager's watchdog (ADR 0010), as a real process: it kills the host's VM processes
(only those whose command line names their pid file) once the published deadline has passed,
marks them fenced, leaves them alone while the deadline is renewed, runs once per state
directory, and ends when nothing is left to guard (no node manager, no VM) or the state
directory goes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tashi.nodemanager import fencing, watchdog

WAIT = 10.0  # seconds any condition below may take


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process a test starts, killed at the end by its pid."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def fake_vm(
    state_dir: Path, iid: int, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """A process that looks to the watchdog like a VM: its pid in ``vms/<iid>/qemu.pid`` and
    that path on its command line (as qemu's ``-pidfile``)."""
    vm_dir = state_dir / "vms" / str(iid)
    vm_dir.mkdir(parents=True)
    pidfile = vm_dir / "qemu.pid"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "-pidfile", str(pidfile)]
    )
    procs.append(proc)
    pidfile.write_text(f"{proc.pid}\n")
    return proc


def test_kill_vms_kills_only_processes_that_name_their_pid_file(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    vm = fake_vm(tmp_path, 7, started)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    started.append(stranger)
    other_dir = tmp_path / "vms" / "8"
    other_dir.mkdir()
    (other_dir / "qemu.pid").write_text(f"{stranger.pid}\n")  # a pid reused by another program
    assert fencing.kill_vms(tmp_path) == [7]
    vm.wait(timeout=WAIT)
    assert vm.returncode == -signal.SIGKILL and alive(stranger)
    assert fencing.FenceMarks(tmp_path).ids() == [7]
    assert fencing.kill_vms(tmp_path) == []  # nothing left to kill


def test_the_watchdog_kills_the_vms_once_the_deadline_has_passed(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "nm"
    state.mkdir()
    vm = fake_vm(state, 3, started)
    node_lock = watchdog.hold_node_lock(state)  # as a live node manager does
    assert node_lock is not None and watchdog.hold_node_lock(state) is None
    fencing.write_deadline(state, time.monotonic() + 1.0)
    dog = watchdog.ensure_running(state, grace=0.2)
    assert dog is not None
    started.append(dog)
    wait_for(lambda: watchdog.running(state), "the watchdog to hold its lock")
    assert watchdog.ensure_running(state) is None  # one per state directory
    assert int((state / watchdog.PIDFILE).read_text()) == dog.pid
    # renewed in time: the VM lives on
    for _ in range(10):
        fencing.write_deadline(state, time.monotonic() + 1.0)
        time.sleep(0.2)
    assert alive(vm)
    # no longer renewed: killed, and marked
    vm.wait(timeout=WAIT)
    assert vm.returncode == -signal.SIGKILL
    assert fencing.FenceMarks(state).ids() == [3]
    assert alive(dog)  # the node manager lives: it may start VMs again
    node_lock.close()  # it ended too: nothing is left to guard
    dog.wait(timeout=WAIT)
    assert dog.returncode == 0


def test_the_watchdog_ends_when_the_state_directory_goes(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "nm"
    state.mkdir()
    node_lock = watchdog.hold_node_lock(state)
    dog = watchdog.ensure_running(state)
    assert dog is not None and node_lock is not None
    started.append(dog)
    wait_for(lambda: watchdog.running(state), "the watchdog to hold its lock")
    shutil.rmtree(state)
    dog.wait(timeout=WAIT)
    node_lock.close()
    assert dog.returncode == 0


def test_no_deadline_means_no_fence(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    vm = fake_vm(tmp_path, 4, started)
    fencing.write_deadline(tmp_path, None)
    dog = watchdog.ensure_running(tmp_path, grace=0.0)
    assert dog is not None
    started.append(dog)
    wait_for(lambda: watchdog.running(tmp_path), "the watchdog to hold its lock")
    time.sleep(1.0)  # five polls of the watchdog with nothing to do: the VM must stay
    assert alive(vm) and fencing.FenceMarks(tmp_path).ids() == []
    assert alive(dog)  # no node manager, but a VM to guard
    os.kill(dog.pid, signal.SIGKILL)
    dog.wait(timeout=WAIT)
    assert not watchdog.running(tmp_path)
