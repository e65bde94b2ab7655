"""The node benchmarks' baseline: the very qemu command a Tashi VM runs, started by hand.

``retarget(argv, moves)`` turns the argv a Tashi VM was started with (read from
``/proc/<pid>/cmdline``, so it is what the driver really ran, not a re-creation) into the same
command for another directory: only the VM's own files move (its state directory: QMP and VNC
sockets, serial log, pid file, ``-D`` log; and its overlay). Every option stays, ``-daemonize``
included: the launcher returns once qemu is initialised, as it does for the driver.

``BareVm`` makes its overlay the way ``DiskManager`` does (``qemu-img create``, timed apart),
runs the command as a plain subprocess with the driver's stdio and session, and stops qemu through
a pidfd of the pid in its pid file. ``BareVm.qmp`` speaks QMP through qemu.qmp's synchronous
client, for the bare live migration. ``wait_marker`` polls a serial log for a console marker;
``boot.py`` uses it for Tashi's VMs too.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from bench.cluster import BenchError
from tashi.vmm.qemu.cmdline import VmPaths

LAUNCH_TIMEOUT = 60.0
QMP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
MARKER_POLL = 0.01  # seconds between reads of a serial log: 5 ms late on average, either side


@dataclass(frozen=True, slots=True)
class Template:
    """The command a Tashi VM runs, and where its own files are."""

    argv: list[str]
    state_dir: Path  # VmPaths.state_dir
    overlay: Path  # its first disk's overlay
    image: Path  # the image the overlay is backed by
    node_root: Path  # the node manager's directory: nothing may point there once moved


def retarget(argv: list[str], moves: dict[str, str], keep_out: Path) -> list[str]:
    """``argv`` with each text in ``moves`` replaced (a file path, or a directory path ending
    in ``/``); ``BenchError`` if any argument still names something under ``keep_out``."""
    out = []
    for arg in argv:
        if arg == "-S":  # the node manager's VM waited for a boot slot; a bare one never does
            continue
        for old, new in moves.items():
            arg = arg.replace(old, new)
        out.append(arg)
    stuck = [a for a in out if str(keep_out) in a]
    if stuck:
        raise BenchError(f"cannot move the VM's files out of {keep_out}: {stuck}")
    return out


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [arg.decode() for arg in raw.split(b"\0")[:-1]]


def wait_marker(path: Path, marker: str, timeout: float, running: Callable[[], bool]) -> float:
    """Poll the serial log ``path`` until ``marker`` appears; return ``time.monotonic()`` then.
    ``BenchError`` when ``running()`` turns false or ``timeout`` passes first."""
    deadline, needle = time.monotonic() + timeout, marker.encode()
    offset, tail = 0, b""
    while True:
        try:
            with path.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            if needle in tail + chunk:
                return time.monotonic()
            tail = (tail + chunk)[-len(needle) :]
        elif not running():
            raise BenchError(f"the VM of {path} ended before printing {marker}")
        if time.monotonic() > deadline:
            raise BenchError(f"no {marker} in {path} after {timeout:.0f} s")
        time.sleep(MARKER_POLL)


def create_overlay(image: Path, overlay: Path) -> float:
    """A qcow2 overlay backed by ``image``, as ``DiskManager`` makes it; the seconds it took."""
    started = time.monotonic()
    argv = [
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        str(image),
        str(overlay),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"qemu-img create failed: {done.stderr.strip()}")
    return time.monotonic() - started


@dataclass
class BareVm:
    """One hand-started qemu in ``directory`` (its state directory and overlay)."""

    directory: Path
    argv: list[str]
    overlay_seconds: float
    pid: int | None = None
    _pidfd: int | None = field(default=None, repr=False)
    _qmp: QEMUMonitorProtocol | None = field(default=None, repr=False)

    @classmethod
    def prepare(cls, directory: Path, template: Template, *, incoming: bool = False) -> BareVm:
        """Its directory, its overlay and the template's command moved to them; with
        ``incoming``, waiting for a migration (``-incoming defer``, as ``build_argv`` adds)."""
        directory.mkdir(mode=0o700)
        overlay = directory / "disk0.qcow2"
        seconds = create_overlay(template.image, overlay)
        moves = {
            str(template.overlay): str(overlay),
            f"{template.state_dir}/": f"{directory}/",
        }
        argv = retarget(template.argv, moves, template.node_root)
        if incoming:
            argv += ["-incoming", "defer"]
        return cls(directory, argv, seconds)

    @property
    def paths(self) -> VmPaths:
        return VmPaths(self.directory)

    def launch(self) -> None:
        """Run the command; returns when the launcher does (qemu initialised, as in Tashi)."""
        try:
            done = subprocess.run(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                timeout=LAUNCH_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"bare qemu did not start within {LAUNCH_TIMEOUT:.0f} s") from exc
        if done.returncode != 0:
            raise BenchError(f"bare qemu failed: {done.stderr.decode(errors='replace')[-2000:]}")
        pid = int(self.paths.pidfile.read_text().strip())
        pidfd = os.pidfd_open(pid)  # from now on a signal can only reach this process
        if str(self.paths.pidfile) not in cmdline(pid):
            os.close(pidfd)
            raise BenchError(f"pid {pid} of {self.paths.pidfile} is not our qemu")
        self.pid, self._pidfd = pid, pidfd

    def running(self) -> bool:
        return self.pid is not None and alive(self.pid)

    def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """One QMP command's return value; ``BenchError`` with QEMU's message on an error."""
        if self._qmp is None:
            self._qmp = QEMUMonitorProtocol(str(self.paths.qmp))
            self._qmp.settimeout(QMP_TIMEOUT)
            try:
                self._qmp.connect()
            except (QMPError, OSError) as exc:
                raise BenchError(f"QMP of {self.directory}: {exc}") from exc
        try:
            return self._qmp.cmd(command, **(arguments or {}))
        except (QMPError, OSError) as exc:
            raise BenchError(f"QMP {command} on {self.directory}: {exc}") from exc

    def stop(self) -> None:
        """Stop qemu through its pidfd (SIGTERM, then SIGKILL) and remove the directory."""
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self._pidfd is not None:
            try:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    signal.pidfd_send_signal(self._pidfd, sig)
                    # A pidfd turns readable when its process ends (init reaps qemu later).
                    if select.select([self._pidfd], [], [], STOP_TIMEOUT)[0]:
                        break
                else:
                    raise BenchError(f"qemu pid {self.pid} does not die")
            except ProcessLookupError:
                pass  # it had ended already
            finally:
                os.close(self._pidfd)
                self._pidfd = None
        shutil.rmtree(self.directory, ignore_errors=True)
