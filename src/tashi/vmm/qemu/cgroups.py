"""CPU weights of VMs: one cgroup (v1 ``cpu`` controller) per VM under ``[Qemu] cgroupRoot``.

A VM's group is ``<cgroupRoot>/vm<instanceId>-<pid>``: the pid makes the name unique on the host
even when several node managers share it (the virtual cluster), and the path is recorded in the
VM's state file so that a restarted node manager finds it. qemu's pid is written to
``cgroup.procs`` (all its threads move, and threads it makes later start there);
``cpu.shares`` is the instance's ``cpuShare`` (1024 by default, as the kernel's own default).
The group is removed when the VM ends; an exited (even not yet reaped) process no longer counts
as a member, but its threads leave one by one, so ``remove`` waits a moment for a busy group.

``check()`` says at start-up whether this works here; when it does not, the driver logs why and
drops its ``cpu_share`` capability instead of failing every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from pathlib import Path

from tashi.domain.errors import BackendFailure
from tashi.domain.ids import InstanceId


def check(root: Path) -> str | None:
    """``None`` if VM groups can be made under ``root``, else why not."""
    parent = root.parent
    if not (parent / "cpu.shares").is_file():
        return f"{parent} is not a cgroup v1 cpu controller (no cpu.shares)"
    try:
        root.mkdir(exist_ok=True)
    except OSError as exc:
        return f"cannot create {root}: {exc.strerror}"
    if not os.access(root / "cgroup.procs", os.W_OK):
        return f"{root}/cgroup.procs is not writable"
    return None


def create(root: Path, instance_id: InstanceId, pid: int, share: int) -> Path:
    """A new group for the VM, holding its process, with ``cpu.shares = share``."""
    group = root / f"vm{int(instance_id)}-{pid}"
    try:
        group.mkdir(exist_ok=True)
        _write(group / "cpu.shares", share)
        _write(group / "cgroup.procs", pid)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the first error is the one to report
            group.rmdir()
        raise BackendFailure(f"cannot put VM {instance_id} in cgroup {group}: {exc}") from exc
    return group


def set_share(group: Path, share: int) -> None:
    try:
        _write(group / "cpu.shares", share)
    except OSError as exc:
        raise BackendFailure(f"cannot set cpu.shares of {group}: {exc.strerror}") from exc


def share_of(group: Path) -> int:
    return int((group / "cpu.shares").read_text())


async def remove(group: Path, timeout: float = 5.0) -> None:
    """Remove the group; a group that is gone already is fine. The process's other threads may
    still be on their way out when its main thread is reported gone, so a busy group is tried
    again for up to ``timeout`` seconds; then ``BackendFailure``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise BackendFailure(f"cannot remove cgroup {group}: {exc.strerror}") from exc
            if asyncio.get_running_loop().time() > deadline:
                raise BackendFailure(f"cgroup {group} still holds processes") from exc
        await asyncio.sleep(0.01)


def _write(path: Path, value: int) -> None:
    with path.open("w") as file:
        file.write(str(value))
