"""Processes of the QEMU driver: launching a daemonizing qemu, and watching processes by pidfd.

A VM's qemu is started with ``-daemonize``: the program we run (the "launcher") forks the real
qemu, waits until it is initialised, and exits 0, or 1 with the reason on its standard error.
The qemu itself is then nobody's child of ours: it survives the node manager, and a new node
manager finds it by the pid and process start time in the VM's state file. Either way we watch
it through a **pidfd** (``os.pidfd_open``), which becomes readable when the process ends and
names that one process even if its pid is reused later, so signals (``pidfd_send_signal``) can
never hit a stranger. No thread waits for anything.

``Helper`` is a short-lived child of ours (``gzip`` compressing a suspend stream): an argv list
with file descriptors for its stdin and stdout, never a shell, waited for by pidfd too.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tashi.domain.errors import BackendFailure

_ERROR_TAIL = 2000  # characters of a failing program's standard error kept in the message


def boot_id() -> str:
    """This boot of the kernel: pids and start times mean nothing across a reboot."""
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def start_time_of(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), ``None`` if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def cmdline_of(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


class Process:
    """A live process watched through its pidfd."""

    def __init__(self, pid: int, pidfd: int, start_time: int) -> None:
        self.pid, self.start_time = pid, start_time
        self._fd: int | None = pidfd
        self._exit: asyncio.Future[None] | None = None
        self._reading = False

    @classmethod
    def attach(cls, pid: int, *, start_time: int | None = None, arg: str = "") -> Process | None:
        """The process ``pid`` if it is alive, started at ``start_time`` (when given) and has
        ``arg`` on its command line (when given); ``None`` otherwise (gone, or a stranger who
        got the pid)."""
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, ValueError):
            return None
        actual = start_time_of(pid)  # read after the pidfd is held: it is that process's
        same = actual is not None and start_time in (None, actual)
        if not same or (arg and arg not in cmdline_of(pid)):
            os.close(fd)
            return None
        assert actual is not None
        return cls(pid, fd, actual)

    def exited(self) -> asyncio.Future[None]:
        """Done when the process has ended (the same future every time)."""
        if self._exit is None:
            loop = asyncio.get_running_loop()
            self._exit = loop.create_future()
            if self._fd is None or not self.alive():
                self._exit.set_result(None)
            else:
                loop.add_reader(self._fd, self._ended)
                self._reading = True
        return self._exit

    def _ended(self) -> None:
        self._stop_reading()
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(None)

    def _stop_reading(self) -> None:
        # Also when the future was cancelled (a cancelled watcher task cancels what it awaits):
        # a reader left on a closed fd would swallow the next pidfd that gets its number.
        if self._reading and self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
        self._reading = False

    async def wait(self, timeout: float) -> bool:
        """Whether the process ended within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.exited())
        except TimeoutError:
            return False
        return True

    def alive(self) -> bool:
        if self._fd is None:
            return False
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return not poller.poll(0)

    def signal(self, sig: signal.Signals) -> None:
        if self._fd is None:
            return
        try:
            signal.pidfd_send_signal(self._fd, sig)
        except ProcessLookupError:
            return

    def close(self) -> None:
        """Stop watching (the process itself is not touched)."""
        if self._fd is None:
            return
        self._stop_reading()
        if self._exit is not None and not self._exit.done():
            self._exit.cancel()
        os.close(self._fd)
        self._fd = None


async def stop(process: Process, grace: float) -> bool:
    """SIGTERM, then SIGKILL after ``grace`` seconds; whether the process is gone after that."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        process.signal(sig)
        if await process.wait(grace):
            return True
    return False


async def launch(argv: Sequence[str], pidfile: Path, log: Path, timeout: float) -> Process:
    """Run a daemonizing qemu and return the daemon, or raise ``BackendFailure`` with its
    error output (its standard error, or the end of ``log``, its ``-D`` file, which receives
    the errors once qemu has parsed its options). A launcher that hangs is killed, and so is a
    daemon that got as far as writing its pid file."""
    log_start = log.stat().st_size if log.exists() else 0
    pidfile.unlink(missing_ok=True)
    try:
        launcher = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise BackendFailure(f"cannot run {argv[0]}: {exc.strerror}") from exc
    try:
        async with asyncio.timeout(timeout):
            _, err = await launcher.communicate()
    except TimeoutError:
        launcher.kill()
        await launcher.wait()
        daemon = from_pidfile(pidfile)
        if daemon is not None:
            await stop(daemon, 5.0)
            daemon.close()
        raise BackendFailure(f"qemu did not start within {timeout:.0f} s") from None
    if launcher.returncode != 0:
        text = err.decode(errors="replace").strip() or _log_tail(
            log, log_start
        )  # -D took its stderr
        raise BackendFailure(f"qemu failed to start (exit {launcher.returncode}): {text}")
    daemon = from_pidfile(pidfile)
    if daemon is None:
        raise BackendFailure(f"qemu started but is gone already (see {pidfile.parent}/qemu.log)")
    return daemon


def _log_tail(log: Path, start: int) -> str:
    try:
        with log.open("rb") as file:
            file.seek(start)
            return file.read().decode(errors="replace").strip()[-_ERROR_TAIL:]
    except OSError:
        return ""


def from_pidfile(pidfile: Path) -> Process | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return Process.attach(pid, arg=str(pidfile))


class Helper:
    """A short-lived child of ours, such as ``gzip -c``: argv, two descriptors, no shell."""

    def __init__(self, argv: Sequence[str], *, stdin: int, stdout: int) -> None:
        self.argv = list(argv)
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendFailure(f"cannot run {argv[0]}: {exc.strerror}") from exc
        # Our own unreaped child: its pid cannot be reused while we hold it.
        self._process = Process(self._popen.pid, os.pidfd_open(self._popen.pid), 0)

    def identity(self) -> tuple[int, int]:
        """Its pid and start time: what finds it again (``Process.attach``) after a restart."""
        return self._popen.pid, start_time_of(self._popen.pid) or 0

    async def wait(self, timeout: float) -> None:
        """Wait for it to end; ``BackendFailure`` if it fails or is still running."""
        if not await self._process.wait(timeout):
            self.kill()
            raise BackendFailure(f"{self.argv[0]} did not finish within {timeout:.0f} s")
        code = self._popen.wait()
        text = ""
        if code != 0 and self._popen.stderr is not None:
            text = self._popen.stderr.read().decode(errors="replace").strip()[-_ERROR_TAIL:]
        self._release()
        if code != 0:
            raise BackendFailure(f"{self.argv[0]} failed (exit {code}): {text}")

    def kill(self) -> None:
        """End it now and reap it (idempotent)."""
        self._process.signal(signal.SIGKILL)
        self._popen.wait()
        self._release()

    def _release(self) -> None:
        self._process.close()
        if self._popen.stderr is not None:
            self._popen.stderr.close()
