"""One VM of the QEMU driver: what it is made of, what state it is in, and how it ends.

A ``QemuVm`` holds the spec, the watched ``Process``, the QMP ``Monitor``, its cgroup and any
helper child (a restore stream's ``gzip -dc``). Commands take ``lock`` so that two never
interleave on one VM; ``destroy`` does not, so it can end a VM stuck in any command.

QEMU's events keep ``state`` true between commands: a ``STOP`` or ``RESUME`` nobody asked for
(no command holds the lock) is news for the node manager, and is emitted as such. The last
``SHUTDOWN`` event tells why the process ended when no command says so (the guest powered off,
or a signal hit it). ``DEVICE_DELETED`` ends a wait in ``unplugged`` (a hot-unplug the guest
has let go, ``hotplug.py``).

``end()`` runs once, when the process is gone (the driver's watcher awaits the pidfd): it closes
the monitor, kills helpers, removes the cgroup, the sockets, the pid file and the state file,
and resolves ``done``. The driver then emits the one ``exited`` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tashi.domain.errors import BackendFailure, InvalidState
from tashi.vmm import statefile
from tashi.vmm.base import ExitReason, Sending, VmEvent, VmSpec, VmState, VmStatus
from tashi.vmm.qemu import cgroups
from tashi.vmm.qemu.cmdline import VmPaths
from tashi.vmm.qemu.monitor import Monitor
from tashi.vmm.qemu.process import Helper, Process

log = logging.getLogger(__name__)

Emit = Callable[[VmEvent], None]

# query-status answers (QEMU's RunState) as the contract's states
_RUN_STATES = {
    "running": VmState.running,
    "inmigrate": VmState.incoming,
    "finish-migrate": VmState.migrating,
    "postmigrate": VmState.migrating,
    "save-vm": VmState.migrating,
    "shutdown": VmState.shutting_down,
}


def state_of(run_state: str) -> VmState:
    """The contract's state for a QEMU run state (everything not running is some pause)."""
    return _RUN_STATES.get(run_state, VmState.paused)


@dataclass
class Outgoing:
    """The transfer a VM is sending itself out with: recorded in the state file before QEMU
    stops or sends anything, so that a node manager that died meanwhile finds it again and
    sees it to its end (``transfer.conclude``)."""

    kind: Literal["suspend", "migrate"]
    target: Path | None  # the suspend file (a migration: None)
    was_running: bool  # whether to run the VM again if the transfer fails
    helper: tuple[int, int] | None = None  # the suspend's gzip: pid and start time

    def sending(self) -> Sending:
        return Sending(self.kind, self.target)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": None if self.target is None else str(self.target),
            "was_running": self.was_running,
            "helper": None if self.helper is None else list(self.helper),
        }

    @classmethod
    def from_json(cls, doc: object) -> Outgoing | None:
        """The record in a state file; ``None`` for none (or one this version cannot read)."""
        if not isinstance(doc, dict) or doc.get("kind") not in ("suspend", "migrate"):
            return None
        helper = doc.get("helper")
        return cls(
            kind=doc["kind"],
            target=Path(doc["target"]) if doc.get("target") else None,
            was_running=bool(doc.get("was_running")),
            helper=(int(helper[0]), int(helper[1])) if helper else None,
        )


class QemuVm:
    def __init__(
        self,
        spec: VmSpec,
        paths: VmPaths,
        process: Process,
        *,
        accel: str,
        monitor_timeout: float,
        emit: Emit,
    ) -> None:
        self.spec, self.paths, self.process, self.accel = spec, paths, process, accel
        self.state = VmState.starting
        self.cgroup: Path | None = None
        self.lock = asyncio.Lock()
        self.exit_reason: ExitReason | None = None  # set by the command that ends the VM
        self.silent = False  # a start that failed: its end is not news
        self.boot_queued = False  # made with -S, waiting for a boot slot (``bootslots``)
        self.helpers: list[Helper] = []
        self.outgoing: Outgoing | None = None  # a suspend or migration under way
        self.awaiting = False  # started to receive a migration or a restore, not yet run
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: devices being unplugged (by id), each resolved by its DEVICE_DELETED event
        self.unplugged: dict[str, asyncio.Future[None]] = {}
        self._shutdown: Mapping[str, Any] | None = None
        self._emit = emit
        self.monitor = Monitor(
            paths.qmp,
            name=f"instance {spec.instance_id}",
            timeout=monitor_timeout,
            on_event=self._on_event,
        )

    @property
    def iid(self) -> int:
        return int(self.spec.instance_id)

    def status(self) -> VmStatus:
        sending = self.outgoing.sending() if self.outgoing is not None else None
        return VmStatus(self.spec.instance_id, self.process.pid, self.state, self.spec, sending)

    def expect(self, *allowed: VmState, what: str) -> None:
        if self.state not in allowed:
            raise InvalidState(f"cannot {what} instance {self.iid}: it is {self.state.value}")

    # --- the state file -------------------------------------------------------------

    def save(self, boot_id: str) -> None:
        """Record what a restarted node manager needs to find this VM again."""
        statefile.write(
            self.paths.state,
            {
                "spec": statefile.spec_to_json(self.spec),
                "pid": self.process.pid,
                "start_time": self.process.start_time,
                "boot_id": boot_id,
                "accel": self.accel,
                "cgroup": None if self.cgroup is None else str(self.cgroup),
                "boot_queued": self.boot_queued,
                "outgoing": None if self.outgoing is None else self.outgoing.to_json(),
                "incoming": self.awaiting,
            },
        )

    # --- events ---------------------------------------------------------------------

    def _on_event(self, name: str, data: Mapping[str, Any]) -> None:
        if name == "SHUTDOWN":
            self._shutdown = data
            return
        if name == "DEVICE_DELETED":
            waiting = self.unplugged.get(str(data.get("device")))
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
            return
        if name not in ("STOP", "RESUME") or self.lock.locked():
            return  # a command in progress owns the state
        if self.state not in (VmState.running, VmState.paused, VmState.shutting_down):
            return  # an incoming VM reports through finish_incoming, not events
        new = VmState.running if name == "RESUME" else VmState.paused
        if new is not self.state:
            self.state = new
            what = "resumed by itself" if name == "RESUME" else "stopped by itself"
            self._emit(VmEvent(self.spec.instance_id, new, what))

    # --- the end --------------------------------------------------------------------

    def reason(self) -> tuple[ExitReason, str]:
        """Why the process ended, and a line for people."""
        if self.exit_reason is not None:
            return self.exit_reason, self.exit_reason.value
        shutdown = self._shutdown or {}
        if shutdown.get("guest"):
            return ExitReason.poweroff, "the guest powered off"
        if shutdown:
            return ExitReason.failed, f"qemu shut down ({shutdown.get('reason', 'no reason')})"
        return ExitReason.failed, "qemu ended without shutting down (killed or crashed)"

    async def end(self) -> None:
        """Release everything of a VM whose process is gone. Runs once."""
        if self.done.done():
            return
        self.state = VmState.exited
        try:
            await self.monitor.close()
            for helper in self.helpers:
                helper.kill()
            self.helpers.clear()
            if self.cgroup is not None:
                try:
                    await cgroups.remove(self.cgroup)
                except BackendFailure as exc:
                    log.error("instance %s: %s", self.iid, exc.message)
            for path in self.paths.made():
                path.unlink(missing_ok=True)
            statefile.remove(self.paths.state)
            self.process.close()
        finally:
            self.done.set_result(None)

    def detach(self) -> None:
        """Stop watching without touching the VM (the driver is closing)."""
        for helper in self.helpers:
            helper.kill()  # a restore stream cannot outlive its reader anyway
        self.helpers.clear()
        self.process.close()


async def wait_state(vm: QemuVm, done: Callable[[str], bool], timeout: float) -> str:
    """Poll ``query-status`` until ``done(status)``; the status. ``BackendFailure`` when qemu
    ends first or ``timeout`` passes."""
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.02
    while True:
        if not vm.process.alive():
            raise BackendFailure(f"instance {vm.iid}: qemu ended ({tail(vm.paths.log)})")
        status = str((await vm.monitor.execute("query-status"))["status"])
        if done(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise BackendFailure(f"instance {vm.iid}: still {status} after {timeout:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


def tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log, on one line (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no log"
    return " | ".join(text.strip().splitlines()[-lines:]) or "nothing logged"
