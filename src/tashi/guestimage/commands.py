"""The one seam where the image builder runs foreign programs (apt-get, dpkg-deb, mke2fs, qemu-img).

Every call is an argv list (never a shell). A program that is missing, fails or hangs becomes a
``BackendFailure`` naming the command and the end of its error output, so that ``tashi-image``
can print one clear line; nothing else in ``tashi.guestimage`` catches ``subprocess`` exceptions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tashi.domain.errors import BackendFailure

# Generous: apt-get download of the 27 MB kernel package is the slowest step (about 1 s here).
DEFAULT_TIMEOUT = 300.0

# apt and dpkg must answer in English so that the one message we look for can be recognised.
_PLAIN_ENV = {"LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Run ``argv`` to completion and return its standard output (text).

    Raises ``BackendFailure`` if the program is not installed, exits non-zero or runs longer
    than ``timeout`` seconds."""
    return run_both(argv, cwd=cwd, env=env, timeout=timeout)[0]


def run_both(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[str, str]:
    """``run``, for a program that reports errors on its standard error and still exits 0
    (``debugfs -f``): its standard output and its standard error."""
    args = [str(arg) for arg in argv]
    try:
        done = subprocess.run(  # an argv list, never a shell
            args,
            cwd=cwd,
            env=_environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except FileNotFoundError as exc:
        raise _not_installed(args[0]) from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendFailure(f"{_show(args)} took longer than {timeout:.0f} s") from exc
    except subprocess.CalledProcessError as exc:
        raise BackendFailure(
            f"{_show(args)} failed with exit status {exc.returncode}: {_tail(exc.stderr)}"
        ) from exc
    return done.stdout, done.stderr


def run_logged(
    argv: Sequence[str | Path],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    tick: Callable[[float], None] | None = None,
    every: float = 30.0,
) -> None:
    """Run a long ``argv`` with its output (both streams) going to ``log``, and call ``tick``
    with the seconds elapsed every ``every`` seconds while it runs (a progress line).

    Raises ``BackendFailure`` as ``run`` does, with the end of the log as the error output."""
    args = [str(arg) for arg in argv]
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            process = subprocess.Popen(  # an argv list, never a shell
                args,
                cwd=cwd,
                env=_environment(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        except FileNotFoundError as exc:
            raise _not_installed(args[0]) from exc
        try:
            while True:
                elapsed = time.monotonic() - started
                try:
                    status = process.wait(timeout=max(0.0, min(every, timeout - elapsed)))
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - started
                    if elapsed >= timeout:
                        raise BackendFailure(
                            f"{_show(args)} took longer than {timeout:.0f} s (log: {log})"
                        ) from None
                    if tick is not None:
                        tick(elapsed)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if status != 0:
        text = log.read_text(errors="replace")[-4000:]
        raise BackendFailure(
            f"{_show(args)} failed with exit status {status} (log: {log}): {_tail(text)}"
        )


def require(program: str) -> None:
    """Fail early, with the package to install, when ``program`` is not on ``PATH``."""
    if shutil.which(program) is None:
        raise _not_installed(program)


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, **_PLAIN_ENV, **(env or {})}


def _not_installed(program: str) -> BackendFailure:
    return BackendFailure(f"{program} is not installed ({_install_hint(program)})")


_PACKAGE_OF = {
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "mmdebstrap": "mmdebstrap",
    "unshare": "util-linux",
    "qemu-img": "qemu-utils",
    "lz4": "lz4",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
    "make": "make",
    "gcc": "gcc",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "tar": "tar",
    "xz": "xz-utils",
}


def _install_hint(program: str) -> str:
    package = _PACKAGE_OF.get(Path(program).name)
    if package is None:
        return "see scripts/bootstrap.sh"
    return f"Debian package {package}; scripts/bootstrap.sh installs it"


def _show(args: Sequence[str]) -> str:
    shown = " ".join(args[:4])
    return f"`{shown}{' ...' if len(args) > 4 else ''}`"


def _tail(stderr: str | None, limit: int = 400) -> str:
    text = " ".join((stderr or "").split())
    if not text:
        return "(no error output)"
    return text if len(text) <= limit else "..." + text[-limit:]
