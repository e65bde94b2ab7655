"""``tashi-cluster`` as a user runs it, without a cluster: a non-root user is told it needs
root (and nothing is made); ``stop`` with nothing running, or while another subcommand holds
the cluster's lock, ends within its deadline; the targets of ``rm`` and ``add`` (hosts and
control-plane pieces) are parsed, ordered and explained."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tashi.devcluster import control
from tashi.devcluster.cli import parse_args
from tashi.devcluster.processes import Daemon
from tashi.devcluster.state import Layout, Proc, State, locked
from tashi.devcluster.targets import Kind, Target, in_start_order, parse_target
from tashi.domain.errors import InvalidInput, InvalidState

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


# --- rm/add targets: parsed without root, without a cluster -------------------------------------


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("2", Target(Kind.HOST, 2)),
        ("cm", Target(Kind.CM)),
        ("CM", Target(Kind.CM)),
        ("scheduler", Target(Kind.SCHEDULER)),
        ("dnsmasq", Target(Kind.DNSMASQ)),
        ("dnsmasq:2", Target(Kind.DNSMASQ, 2)),
        ("nm:3", Target(Kind.NM, 3)),
        ("prosody", Target(Kind.PROSODY)),
        ("xmpp", Target(Kind.XMPP)),
    ],
)
def test_a_target_names_a_host_or_a_piece(text: str, target: Target) -> None:
    assert parse_target(text) == target
    assert str(target) == text.lower()


@pytest.mark.parametrize("text", ["0", "nm", "nm:", "nm:x", "host2", "cm:1", "dnsmasq:0", "db"])
def test_a_bad_target_says_what_is_accepted(text: str) -> None:
    with pytest.raises(InvalidInput, match="nm:N"):
        parse_target(text)


def test_rm_and_add_take_hosts_and_pieces_together() -> None:
    args = parse_args(["--state-dir", "/x", "rm", "2", "cm", "nm:1", "dnsmasq:2"])
    assert args.command == "rm"
    assert args.targets == [
        Target(Kind.HOST, 2),
        Target(Kind.CM),
        Target(Kind.NM, 1),
        Target(Kind.DNSMASQ, 2),
    ]
    assert parse_args(["add", "4", "5"]).targets == [Target(Kind.HOST, 4), Target(Kind.HOST, 5)]


def test_add_starts_the_cluster_manager_first_and_hosts_last() -> None:
    given = [parse_target(t) for t in ["3", "nm:1", "scheduler", "dnsmasq", "cm", "nm:1"]]
    assert [str(t) for t in in_start_order(given)] == ["cm", "dnsmasq", "scheduler", "nm:1", "3"]


def test_a_bad_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["rm", "cm", "database"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: tashi-cluster rm" in err and "'database' is not a host" in err


@pytest.mark.parametrize("argv", [["--help"], ["rm", "--help"], ["add", "--help"]])
def test_the_help_teaches_the_targets(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    out = capsys.readouterr().out
    for word in ("rm cm", "add cm", "nm:N", "dnsmasq", "scheduler"):
        assert word in out, f"{word!r} is not in `tashi-cluster {' '.join(argv)}`"


def test_a_piece_not_in_the_cluster_is_refused_before_anything_is_killed() -> None:
    state = State(tag="t", fabric="198.18.0.0/20", cm_port=1, networks=[1], cgroup="/x")
    state.daemons["tashi-cm"] = Proc(1, None)
    state.daemons["dnsmasq.1"] = Proc(2, None)
    assert [p.name for p in control.resolve(state, Target(Kind.DNSMASQ))] == ["dnsmasq:1"]
    with pytest.raises(InvalidInput, match="no dnsmasq serves network 2"):
        control.resolve(state, Target(Kind.DNSMASQ, 2))
    with pytest.raises(InvalidState, match="no scheduler"):
        control.resolve(state, Target(Kind.SCHEDULER))
    with pytest.raises(InvalidState, match="add 4"):
        control.resolve(state, Target(Kind.NM, 4))


def test_the_state_file_keeps_how_to_start_each_piece_again(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    state = State(tag="t", fabric="198.18.0.0/20", cm_port=1, networks=[1], cgroup="/x")
    daemon = Daemon("tashi-cm", ["/bin/tashi-cm"], tmp_path, tmp_path / "cm.cfg", 9, netns="ns")
    state.daemons["tashi-cm"] = Proc(5, 7, daemon.launch(), crashed=True)
    state.hosts[1] = Proc(6, None)  # as an older tashi-cluster wrote it
    layout.save(state)
    again = layout.load()
    assert again == state
    assert again.daemons["tashi-cm"].launch is not None
    assert Daemon.from_launch(again.daemons["tashi-cm"].launch).command()[-1] == "/bin/tashi-cm"
