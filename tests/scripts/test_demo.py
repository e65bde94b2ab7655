"""``make demo`` works: scripts/demo.sh against a real ``tashi-cm`` and the real ``tashi`` client.

The script runs with its state in a temporary directory (``TASHI_DEMO_DIR``) and the console
scripts of the interpreter running the tests (``TASHI_DEMO_BIN``), so a developer's own demo under
var/demo is left alone. The cluster manager it leaves running is stopped by ``demo.sh stop``, and
by pid if the test fails before that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo.sh"
BIN = Path(sys.executable).parent


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
    env.update(TASHI_DEMO_DIR=str(tmp_path / "demo"), TASHI_DEMO_BIN=str(BIN))
    yield env
    pidfile = tmp_path / "demo" / "cm.pid"
    if pidfile.exists():  # the test failed before `demo.sh stop`: stop what the script started
        pid = int(pidfile.read_text())
        if alive(pid):
            os.kill(pid, signal.SIGTERM)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.mark.skipif(not (BIN / "tashi-cm").exists(), reason="the project is not installed here")
def test_the_demo_drives_a_real_cluster_manager_and_stops_it(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    done = run(demo_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for expected in (
        "Network default added with id 1.",
        "User alice registered",
        "alice may not register users",
        "alice-vm",
        "web-2",
        "demo-host-1",
        "tiny.qcow2",
        "Phases:",
    ):
        assert expected in out, f"{expected!r} is missing from the demo's output"
    pid = int((tmp_path / "demo" / "cm.pid").read_text())
    assert alive(pid), "the demo leaves its cluster manager running"
    assert f"kill {pid}" in out

    stopped = run(demo_env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(pid)
    assert not (tmp_path / "demo" / "cm.pid").exists()


def test_the_demo_refuses_to_clear_a_directory_it_did_not_make(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    precious = tmp_path / "demo" / "precious.txt"
    precious.parent.mkdir()
    precious.write_text("keep me")
    done = run(demo_env)
    assert done.returncode != 0
    assert "refusing to clear" in done.stderr
    assert precious.read_text() == "keep me"
