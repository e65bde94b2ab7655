"""Crash and restart the pieces of a virtual cluster's control plane: ``rm cm`` / ``add cm``.

A piece is one recorded daemon: the cluster manager (``tashi-cm``), the scheduler, each
dnsmasq (one per VM network, started by ``tashi-cluster`` itself: the scheduler's DhcpDns hook
only rewrites their files and sends SIGHUP to the pid in their pid files), or one host's node
manager (``nm:N``). ``crash`` is what a real crash is: SIGKILL of that one process, by pid (the
pid checked against its start time), nobody told, nothing cleaned up; a node manager's VMs and
watchdog keep running. The piece stays in the state file, marked crashed, with its
``processes.Launch``; ``restart`` starts it again from that Launch (the same command, config,
directory and namespace, so the same database, lease files and VM directories) and waits until
it is ready. ``cluster.py`` resolves targets (``targets.py``) and saves the state.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tashi.config.cluster import ClusterSettings
from tashi.devcluster import configs, processes
from tashi.devcluster.state import Layout, Proc, State
from tashi.devcluster.targets import Kind, Target
from tashi.domain.errors import InvalidInput, InvalidState

Say = Callable[[str], None]
KEYS = {
    Kind.CM: "tashi-cm",
    Kind.SCHEDULER: "tashi-scheduler",
    Kind.PROSODY: "prosody",
    Kind.XMPP: "tashi-xmpp",
}


@dataclass(frozen=True)
class Piece:
    """One piece as ``rm``/``add``/``status`` name it (``cm``, ``dnsmasq:1``, ``nm:2``) and
    where its record is: ``state.daemons[key]``, or ``state.hosts[host]`` for a node manager."""

    name: str
    key: str | None = None
    host: int | None = None

    def proc(self, state: State) -> Proc:
        return state.hosts[self.host] if self.host is not None else state.daemons[str(self.key)]

    def record(self, state: State, proc: Proc) -> None:
        if self.host is not None:
            state.hosts[self.host] = proc
        else:
            state.daemons[str(self.key)] = proc


@dataclass(frozen=True)
class PieceStatus:
    name: str
    pid: int
    running: bool
    crashed: bool  # killed by `tashi-cluster rm` (not exited by itself)
    log: Path | None

    @property
    def process(self) -> str:
        """running / down (rm) / down (exited by itself: see its log)."""
        return "running" if self.running else "down (rm)" if self.crashed else "down"


def piece_name(key: str) -> str:
    """The name ``rm``/``add`` use for the daemon recorded as ``key``."""
    for kind, known in KEYS.items():
        if key == known:
            return kind.value
    return key.replace(".", ":")  # dnsmasq.1 -> dnsmasq:1


def resolve(state: State, target: Target) -> list[Piece]:
    """The pieces a (non-host) target names; ``InvalidInput``/``InvalidState`` saying why
    when there is none."""
    if target.kind is Kind.NM:
        assert target.number is not None
        if target.number not in state.hosts:
            raise InvalidState(
                f"host {target.number} is not running (never started, or crashed with"
                f" `rm {target.number}`): `add {target.number}` boots it"
            )
        return [Piece(str(target), host=target.number)]
    if target.kind in KEYS:
        key = KEYS[target.kind]
        if key not in state.daemons:
            raise InvalidState(f"this cluster has no {target} ({key} is not installed)")
        return [Piece(str(target), key=key)]
    if target.kind is Kind.DNSMASQ:
        return _dnsmasqs(state, target.number)
    raise InvalidInput(f"{target} is a host, not a piece of the control plane")


def _dnsmasqs(state: State, network: int | None) -> list[Piece]:
    keys = sorted(k for k in state.daemons if k.startswith("dnsmasq."))
    if network is None:
        if not keys:
            raise InvalidState("this cluster runs no dnsmasq")
        return [Piece(piece_name(k), key=k) for k in keys]
    key = f"dnsmasq.{network}"
    if key not in keys:
        known = ", ".join(piece_name(k) for k in keys) or "none"
        raise InvalidInput(f"no dnsmasq serves network {network} (the cluster's: {known})")
    return [Piece(f"dnsmasq:{network}", key=key)]


def helper(settings: ClusterSettings, layout: Layout, state: State, name: str) -> processes.Daemon:
    """A piece that is no Tashi daemon (a dnsmasq, the log keeper) and reads no Tashi config:
    in the cluster manager's namespace, a session of its own, its output in ``<name>.log`` of
    the state directory. The caller sets its argv and how it is ready (pid file, log line)."""
    return processes.Daemon(
        name,
        [],
        layout.root,
        layout.root / "none",  # no Tashi config
        0,
        netns=configs.plan(state).cm_ns,
        new_session=True,
        startup_timeout=settings.start_timeout,
    )


def spawn(daemon: processes.Daemon) -> Proc:
    """Start ``daemon`` (not waiting for it) and its record: pid, start time, and how it was
    started, so that ``restart`` can start it again the same way."""
    process = daemon.spawn()
    return Proc(process.pid, processes.start_time(process.pid), daemon.launch())


def crash(state: State, piece: Piece, say: Say) -> None:
    """SIGKILL the piece's process (if it runs) and wait until it is gone; marks it crashed."""
    proc = piece.proc(state)
    if processes.alive(proc.pid, proc.started):
        processes.stop_pid(
            proc.pid, proc.started, sig=signal.SIGKILL, timeout=processes.KILL_TIMEOUT
        )
        say(f"{piece.name}: killed pid {proc.pid} (SIGKILL)")
    else:
        say(f"{piece.name} (pid {proc.pid}) was not running")
    proc.crashed = True


def restart(state: State, piece: Piece, say: Say, save: Callable[[], None]) -> bool:
    """Start the piece again exactly as it was started and wait until it is ready; ``False``
    (and a note) when it is still running. The new pid is saved before the wait, so a start
    that fails is still found and stopped by ``stop``."""
    proc = piece.proc(state)
    if processes.alive(proc.pid, proc.started):
        say(f"{piece.name} is running (pid {proc.pid}): skipped")
        return False
    if proc.launch is None:
        raise InvalidState(
            f"{piece.name} was started by an older tashi-cluster that did not record how:"
            " `tashi-cluster stop` and start the cluster again"
        )
    daemon = processes.Daemon.from_launch(proc.launch)
    again = spawn(daemon)
    piece.record(state, again)
    save()
    daemon.wait_healthy()
    say(f"{piece.name}: started again, pid {again.pid}")
    return True


def status(state: State) -> list[PieceStatus]:
    """Every recorded piece: the cluster manager, scheduler, dnsmasqs, then each host's node
    manager (a host crashed with ``rm N`` has none until ``add N``)."""
    order = {"tashi-cm": 0, "tashi-scheduler": 1}
    keys = sorted(state.daemons, key=lambda k: (order.get(k, 2), k))
    found = [_status(piece_name(k), state.daemons[k]) for k in keys]
    return found + [_status(f"nm:{n}", state.hosts[n]) for n in sorted(state.hosts)]


def nm_status(state: State, number: int) -> PieceStatus | None:
    proc = state.hosts.get(number)
    return None if proc is None else _status(f"nm:{number}", proc)


def _status(name: str, proc: Proc) -> PieceStatus:
    log = None
    if proc.launch is not None:
        log = Path(proc.launch.root) / f"{proc.launch.name}.log"
    return PieceStatus(
        name=name,
        pid=proc.pid,
        running=processes.alive(proc.pid, proc.started),
        crashed=proc.crashed,
        log=log,
    )
