"""``tashi-cluster`` as a user runs it, without a cluster: a non-root user is told it needs
root (and nothing is made); ``stop`` with nothing running, or while another subcommand holds
the cluster's lock, ends within its deadline."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tashi.devcluster.state import locked
from tashi.domain.errors import InvalidState

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to nobody needs root")


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    command = [setpriv, "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
    command += [sys.executable, "-m", "tashi.devcluster.cli", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, cwd="/", env=env
    )


@needs_root
@pytest.mark.parametrize("args", [["start"], ["add", "4"], ["rm", "2"], ["stop"], ["status"]])
def test_a_non_root_user_is_told_it_needs_root(tmp_path: Path, args: list[str]) -> None:
    state = tmp_path / "state"
    result = _as_nobody("--state-dir", str(state), *args)
    assert result.returncode == 1
    assert "needs root" in result.stderr and "sudo" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert not state.exists() and not list(tmp_path.iterdir())


@needs_root
def test_stop_without_a_cluster_returns_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tashi.devcluster.cli", "--state-dir", str(state), "stop"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "cluster stopped" in result.stdout
    assert time.monotonic() - began < 30
    assert not state.exists()


def test_the_lock_has_a_deadline_and_names_its_holder(tmp_path: Path) -> None:
    root = tmp_path / "state"
    lock = tmp_path / ".state.lock"
    lock.write_text("4242")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        # flock locks belong to the open file: a second open of ours competes like another process
        with pytest.raises(InvalidState, match="pid 4242"), locked(root, timeout=0.3):
            pass
    with locked(root, timeout=0.3):
        assert lock.read_text() == str(os.getpid())
