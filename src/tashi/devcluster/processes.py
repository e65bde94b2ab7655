"""Daemons as child processes: the one process harness of the end-to-end tests, the benchmarks
and ``tashi-cluster``.

``Daemon`` is one ``tashi-cm``/``tashi-nm``/``tashi-scheduler`` subprocess with its own directory,
config file (named by ``TASHI_CONFIG``), ``HOME`` and log; ``start()`` waits until it is ready
(``/health`` on its port, a line in its log, or its pid in a pid file), ``stop()`` ends it by pid
(SIGTERM, then SIGKILL after a deadline), ``kill()`` crashes it. A daemon may run in a network
namespace (``netns``): it is then started through ``python -m tashi.devcluster.enter`` which
joins the namespace and execs the program. ``Daemon.launch()`` is how it was started as plain
data (``Launch``), which ``tashi-cluster`` keeps in its state file so that a later invocation
starts a crashed daemon again exactly as before (``Daemon.from_launch``).

``stop_pid`` ends a process that is not our child (one a previous ``tashi-cluster`` started)
by pid, after checking that the pid still names the process we mean (its start time), so a pid
the kernel handed to someone else is never signalled. Waiting is always for a condition with a
deadline (``wait_for``); the error it raises on a timeout is the caller's choice.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tashi.domain.errors import BackendFailure, Unavailable

BIN = Path(sys.executable).parent
T = TypeVar("T")
STOP_TIMEOUT = 15.0
KILL_TIMEOUT = 10.0


class WaitTimeout(Unavailable):
    """A condition ``wait_for`` waited for did not come true within its deadline."""

    code = "timeout"


class DaemonFailed(BackendFailure):
    """A daemon exited while it was starting; the message carries the end of its log."""

    code = "daemon_failed"


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 30.0,
    every: float = 0.05,
    error: Callable[[str], Exception] = WaitTimeout,
) -> T:
    """Poll ``probe`` until it returns something truthy; raise ``error(message)`` once
    ``timeout`` seconds have passed without it."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def write_config(
    path: Path, sections: Mapping[str, Mapping[str, object]], *, private: bool = False
) -> Path:
    """Write an INI file keeping the camelCase option names; ``private``: mode 0600 (it holds
    a password)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep camelCase names
    for section, values in sections.items():
        parser[section] = {k: str(v) for k, v in values.items()}
    with path.open("w") as handle:
        parser.write(handle)
    if private:
        path.chmod(0o600)
    return path


def program(name: str) -> str:
    """The console script ``name`` of this installation (beside the running interpreter)."""
    return str(BIN / name)


@dataclass(frozen=True)
class Launch:
    """How a ``Daemon`` was started, in JSON-able fields: the same command, directory, config
    file, namespace and readiness check. The rest of the environment is the one of whoever
    starts it again (without its ``TASHI_*`` variables), as at the first start: it is not
    recorded (it may hold secrets of the user's)."""

    name: str
    argv: list[str]
    root: str
    config: str
    port: int
    health_host: str
    netns: str | None
    startup_timeout: float
    env: dict[str, str]
    ready_log: str | None
    pid_file: str | None


@dataclass
class Daemon:
    """One daemon subprocess; see the module doc.

    ``new_session``: start it in a session of its own, so a Ctrl-C in the terminal reaches only
    the caller (which then stops it in order), and so it outlives the caller when detached.
    """

    name: str
    argv: list[str]
    root: Path
    config: Path
    port: int
    health_host: str = "127.0.0.1"
    netns: str | None = None
    new_session: bool = False
    startup_timeout: float = 30.0
    error: Callable[[str], Exception] = DaemonFailed
    env: dict[str, str] = field(default_factory=dict)
    ready_log: str | None = None  # no /health: ready once its log has this text (anew)
    pid_file: Path | None = None  # no /health: ready once this file holds its pid
    process: subprocess.Popen[bytes] | None = None
    _log_start: int = field(default=0, init=False, repr=False)  # the log's size at spawn

    def launch(self) -> Launch:
        """How this daemon is started (``from_launch`` makes it again from that)."""
        return Launch(
            name=self.name,
            argv=list(self.argv),
            root=str(self.root),
            config=str(self.config),
            port=self.port,
            health_host=self.health_host,
            netns=self.netns,
            startup_timeout=self.startup_timeout,
            env=dict(self.env),
            ready_log=self.ready_log,
            pid_file=None if self.pid_file is None else str(self.pid_file),
        )

    @classmethod
    def from_launch(cls, launch: Launch, *, new_session: bool = True) -> Daemon:
        return cls(
            launch.name,
            list(launch.argv),
            Path(launch.root),
            Path(launch.config),
            launch.port,
            health_host=launch.health_host,
            netns=launch.netns,
            new_session=new_session,
            startup_timeout=launch.startup_timeout,
            env=dict(launch.env),
            ready_log=launch.ready_log,
            pid_file=None if launch.pid_file is None else Path(launch.pid_file),
        )

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise self.error(f"{self.name} is not running")
        return self.process.pid

    def command(self) -> list[str]:
        if self.netns is None:
            return list(self.argv)
        return [sys.executable, "-m", "tashi.devcluster.enter", self.netns, "--", *self.argv]

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process (without waiting for it to be healthy)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
        env.update(HOME=str(self.root / "home"), TASHI_CONFIG=str(self.config), **self.env)
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._log_start = out.tell()  # a restarted daemon is ready on its new lines only
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.new_session,
            )
        return self.process

    def start(self) -> None:
        self.spawn()
        self.wait_healthy()

    def wait_healthy(self) -> None:
        wait_for(
            f"{self.name} to be ready (/health, or its log)",
            self._healthy,
            self.startup_timeout,
            error=self.error,
        )

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise self.error(f"{self.name} exited at start:\n{self.log_tail()}")
        if self.ready_log is not None:
            with self.log.open("rb") as log:
                # from where it started, unless the log was emptied since (the log keeper)
                log.seek(self._log_start if self._log_start <= self.log.stat().st_size else 0)
                return self.ready_log in log.read().decode(errors="replace")
        if self.pid_file is not None:
            try:
                return self.pid_file.read_text().strip() == str(self.process.pid)
            except OSError:
                return False
        try:
            url = f"http://{self.health_host}:{self.port}/health"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL, no clean-up of its own (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=KILL_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM by pid, then SIGKILL if it does not exit; reaped either way."""
        if self.process is not None:
            stop_child(self.process)

    def rss_mb(self) -> float:
        """Resident memory (``VmRSS``) of the daemon's process, in MB (10^6 bytes)."""
        return rss_mb(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def logged_at(self, text: str, since: float) -> float | None:
        """When (``time.time()``) the daemon first logged a line containing ``text`` at or
        after ``since``; ``None`` if it has not. Log times are local, to the millisecond."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        for line in lines:
            if text not in line:
                continue
            try:
                at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if at >= since - 0.001:  # the log's millisecond truncation
                return at
        return None


def stop_child(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """Stop a child of ours: SIGTERM, then SIGKILL if it has not exited within ``timeout``;
    reaped either way (an unreaped child's pid cannot be reused), and the pipes we hold to it
    closed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(KILL_TIMEOUT)
    close_pipes(process)


def kill_child(process: subprocess.Popen[Any]) -> None:
    """Crash a child of ours (SIGKILL, no clean-up of its own), reap it and close the pipes we
    hold to it."""
    if process.poll() is None:
        process.kill()
        process.wait(KILL_TIMEOUT)
    close_pipes(process)


def close_pipes(process: subprocess.Popen[Any]) -> None:
    """Close our ends of a finished child's pipes (left open, each is a ResourceWarning when
    it is collected)."""
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            # Closing stdin flushes what the dead child never read: nobody is left to read it.
            with contextlib.suppress(BrokenPipeError):
                stream.close()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22);
    ``None`` when there is no such process. With the pid it names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def alive(pid: int, started: int | None = None) -> bool:
    """``pid`` runs (not a zombie) and, when ``started`` is given, is the process that
    started then (not a later one the kernel gave the same pid)."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def stop_pid(
    pid: int,
    started: int | None = None,
    *,
    timeout: float = STOP_TIMEOUT,
    sig: int = signal.SIGTERM,
) -> bool:
    """Send ``sig`` to ``pid`` (if it is still the process that started at ``started``), wait
    up to ``timeout`` for it to go, then SIGKILL. ``False`` if it was not running."""
    if not alive(pid, started):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _gone(pid, started):
                return True
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_TIMEOUT
        while time.monotonic() < deadline and not _gone(pid, started):
            time.sleep(0.02)
    return True


def stop_pids(procs: list[tuple[int, int | None]], *, timeout: float = STOP_TIMEOUT) -> None:
    """``stop_pid`` for many processes at once: SIGTERM to all, one deadline for all of them
    to go, then SIGKILL to the rest (so N node managers take one timeout, not N)."""
    running = [(pid, started) for pid, started in procs if alive(pid, started)]
    for pid, _started in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for sig, wait in ((None, timeout), (signal.SIGKILL, KILL_TIMEOUT)):
        if sig is not None:
            for pid, _started in running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while running and time.monotonic() < deadline:
            running = [(pid, started) for pid, started in running if not _gone(pid, started)]
            if running:
                time.sleep(0.02)


def _gone(pid: int, started: int | None) -> bool:
    """True once ``pid`` has exited (reaping it if it is our child, so no zombie is left)."""
    try:
        reaped, _status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return True
    except ChildProcessError:  # not our child
        pass
    return not alive(pid, started)


def rss_mb(pid: int) -> float:
    """Resident memory (``VmRSS``) of a process, in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6  # kB (KiB) to MB
    raise Unavailable(f"process {pid} has no VmRSS (a kernel thread or a zombie?)")
