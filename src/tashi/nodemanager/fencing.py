"""The files a node manager and its watchdog share about fencing (ADR 0010).

Both live in the node manager's state directory and outlive either process:

* ``lease-deadline``: the moment (``CLOCK_MONOTONIC``, shared by every process of this boot)
  after which the host's VMs must no longer run, or ``none`` when the host holds no lease that
  can run out (HA off, or no one to vouch for it). The node manager writes it; the watchdog
  reads it.
* ``fenced/<instanceId>``: one empty file for each VM stopped because the lease ran out,
  written by whichever process stopped it. The node manager reports them to the cluster
  manager (the instance is to run elsewhere, it did not end) and removes each once a reply
  acknowledged it.

``kill_vms`` is how the watchdog stops VMs without the node manager: it kills, with SIGKILL,
every process named by a ``*.pid`` file in a VM directory whose command line names that pid
file, the QEMU driver's own way of finding its VMs again (``vmm.qemu.process.from_pidfile``,
through a pidfd: a reused pid is never hit). A VMM driver whose VMs live in the node manager's
own process (the fake) has no such files: its VMs die with the node manager.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from pathlib import Path

from tashi.vmm.qemu.process import Process, from_pidfile

DEADLINE = "lease-deadline"
FENCED = "fenced"
VMS = "vms"


def write_deadline(state_dir: Path, deadline: float | None) -> None:
    """Atomically replace the deadline (``None``: no lease that can run out)."""
    path = state_dir / DEADLINE
    tmp = path.with_name(DEADLINE + ".new")
    tmp.write_text("none\n" if deadline is None else f"{deadline:.3f}\n")
    os.replace(tmp, path)


def read_deadline(state_dir: Path) -> float | None:
    """The deadline written last; ``None`` if there is none or no file."""
    try:
        text = (state_dir / DEADLINE).read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return float(text)
    except ValueError:
        return None


class FenceMarks:
    """``fenced/<instanceId>`` files: VMs stopped because the lease ran out."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / FENCED

    def add(self, instance_id: int) -> None:
        self.root.mkdir(mode=0o700, exist_ok=True)
        (self.root / str(int(instance_id))).touch()

    def __contains__(self, instance_id: object) -> bool:
        return isinstance(instance_id, int) and (self.root / str(instance_id)).exists()

    def ids(self) -> list[int]:
        try:
            names = [p.name for p in self.root.iterdir()]
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    def clear(self, instance_ids: Iterable[int]) -> None:
        for iid in instance_ids:
            (self.root / str(int(iid))).unlink(missing_ok=True)


def vm_processes(state_dir: Path) -> dict[int, list[Process]]:
    """The live VM processes of this host by instance id, each held by a pidfd (the caller
    closes them): the pid in a ``vms/<id>/*.pid`` file, if that process's command line names
    the file (``Process.attach``: a reused pid is never taken for the VM)."""
    found: dict[int, list[Process]] = {}
    try:
        dirs = [d for d in (state_dir / VMS).iterdir() if d.is_dir() and d.name.isdigit()]
    except FileNotFoundError:
        return found
    for vm_dir in dirs:
        for pidfile in vm_dir.glob("*.pid"):
            process = from_pidfile(pidfile)
            if process is not None:
                found.setdefault(int(vm_dir.name), []).append(process)
    return found


def has_vms(state_dir: Path) -> bool:
    """Whether any VM process of this host is alive."""
    found = vm_processes(state_dir)
    for processes in found.values():
        for process in processes:
            process.close()
    return bool(found)


def kill_vms(state_dir: Path) -> list[int]:
    """SIGKILL every VM process of this host, marking each instance fenced first; returns the
    instance ids."""
    marks = FenceMarks(state_dir)
    killed = []
    for iid, processes in vm_processes(state_dir).items():
        marks.add(iid)
        for process in processes:
            process.signal(signal.SIGKILL)
            process.close()
        killed.append(iid)
    return killed
