"""Moving a VM's state: suspend to a file, restore from one, live migration over TCP.

All three are QEMU migrations; only the channel differs. **No shell anywhere**: QEMU's
``exec:`` URI would run ``/bin/sh -c``, so it is never used. For a suspend the driver opens the
file, starts ``gzip -1 -c`` itself (argv; its stdout is the file, its stdin a pipe), hands the
pipe's write end to qemu over QMP (``getfd``, SCM_RIGHTS) and migrates to ``fd:<name>``; a
restore runs ``gzip -dc`` with the file as stdin and hands qemu the read end. A file that does
not start with gzip's magic bytes is read as it is (``suspendCompression = none``).

Disks that are not shared (the overlays of non-persistent disks, in this node's scratch
directory) travel in the same stream: QEMU 7.2's block migration with ``block-incremental``,
which copies only the overlay's own clusters; the target opens a fresh overlay on the same
backing image. Shared disks stay where they are (``base.check_movable`` refuses a mix).

A failed or timed-out outgoing migration is cancelled, and the VM runs on here: QEMU resumes it
by itself when the failure comes late, and ``cont`` makes sure when it does not.

A node manager that dies in the middle of a suspend or a migration does not stop QEMU, which
goes on sending. So the transfer is written into the VM's state file (``Outgoing``) before QEMU
is asked for anything, and a node manager that adopts the VM later ends it with ``conclude``:
it waits for QEMU, and either makes the suspend file whole (gzip's own check of the stream)
and lets the VM go, as a finished suspend or migration does, or runs the VM on here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tashi.domain.errors import BackendFailure
from tashi.vmm.base import MigrationStats, MigrationTicket, VmState
from tashi.vmm.qemu.process import Helper, Process
from tashi.vmm.qemu.vm import Outgoing, QemuVm, tail, wait_state

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_DONE = ("completed", "failed", "cancelled")
_SUSPEND_FD = "tashi-suspend"
_RESTORE_FD = "tashi-restore"

#: Writes the VM's state file (``QemuVm.save`` with the driver's boot id).
Persist = Callable[[], None]


async def _configure(vm: QemuVm, bandwidth_mb: int) -> None:
    # A read-only disk (a NoCloud seed) is left out of block migration: the target has its own.
    local = any(not disk.shared and not disk.read_only for disk in vm.spec.disks)
    capabilities = [{"capability": "block", "state": local}]
    await vm.monitor.execute("migrate-set-capabilities", {"capabilities": capabilities})
    parameters = {"block-incremental": local, "max-bandwidth": bandwidth_mb * 2**20}
    await vm.monitor.execute("migrate-set-parameters", parameters)


POLL = 0.02  # seconds between two query-migrate while a migration runs


async def _finish(vm: QemuVm, timeout: float) -> dict[str, Any]:
    """Poll ``query-migrate`` until the migration ends; cancel it after ``timeout``.

    Every 20 ms: the query is cheap, and with a longer back-off the end of a sub-second
    migration was noticed up to 200 ms late (see docs/benchmarks.md)."""
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + timeout, POLL
    cancelled = False
    while True:
        info = await vm.monitor.execute("query-migrate")
        if info.get("status") in _DONE or info.get("status", "none") == "none":
            return dict(info)  # ended, or (a transfer taken over after a restart) never began
        if loop.time() > deadline and not cancelled:
            await vm.monitor.execute("migrate_cancel")
            cancelled, deadline = True, deadline + 30.0
        elif loop.time() > deadline:
            raise BackendFailure(f"instance {vm.iid}: the migration does not stop")
        await asyncio.sleep(delay)


async def _run_on(vm: QemuVm, was_running: bool) -> None:
    """After a failed migration: make sure the VM runs again if it ran before. A failure here
    is logged, not raised: the caller is already raising the reason the migration failed."""
    vm.state = VmState.running if was_running else VmState.paused
    try:
        status = str((await vm.monitor.execute("query-status"))["status"])
        if was_running and status != "running":
            await vm.monitor.execute("cont")
    except BackendFailure as exc:
        log.error("instance %s: cannot run it again after a failed migration: %s", vm.iid, exc)


def _failure(info: dict[str, Any], where: str, timeout: float) -> str:
    if info.get("status") == "cancelled":
        return f"{where}: did not finish within {timeout:.0f} s"
    return f"{where}: {info.get('error-desc', info.get('status', 'failed'))}"


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def _forget_outgoing(vm: QemuVm, persist: Persist) -> None:
    """The transfer is over and the VM runs on: no restart must take it up again."""
    vm.outgoing = None
    if vm.process.alive():  # a VM that ended has no state file to write
        persist()


async def save(
    vm: QemuVm,
    target: Path,
    *,
    compress: bool,
    bandwidth_mb: int,
    timeout: float,
    persist: Persist,
) -> None:
    """Write the VM's state to ``target`` (atomically) and leave it stopped. On failure the VM
    runs again if it ran, nothing is left at ``target``, and this raises. ``persist`` writes
    the VM's state file: the transfer is recorded there (``vm.outgoing``) before anything
    starts, for a node manager restarted meanwhile (``conclude``)."""
    was_running = vm.state is VmState.running
    partial = _partial(target)
    vm.outgoing = Outgoing("suspend", target, was_running)
    persist()
    helper: Helper | None = None
    try:
        await vm.monitor.execute("stop")  # one consistent pass: nothing dirties memory meanwhile
        vm.state = VmState.migrating
        out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            if compress:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                try:
                    helper = Helper(["gzip", "-1", "-c"], stdin=read_end, stdout=out)
                finally:
                    os.close(read_end)
                vm.outgoing.helper = helper.identity()
                persist()
                try:
                    await vm.monitor.send_fd(_SUSPEND_FD, write_end)
                finally:
                    os.close(write_end)  # qemu holds its own copy; gzip sees EOF when it ends
            else:
                await vm.monitor.send_fd(_SUSPEND_FD, out)
            await _configure(vm, bandwidth_mb)
            await vm.monitor.execute("migrate", {"uri": f"fd:{_SUSPEND_FD}"})
            info = await _finish(vm, timeout)
            if info.get("status") != "completed":
                raise BackendFailure(_failure(info, f"suspending instance {vm.iid}", timeout))
            if helper is not None:
                await helper.wait(timeout)
            os.fsync(out)
        finally:
            os.close(out)
        partial.replace(target)
    except BaseException:
        if helper is not None:
            helper.kill()
        partial.unlink(missing_ok=True)
        await _run_on(vm, was_running)
        _forget_outgoing(vm, persist)
        raise


async def start_restore(vm: QemuVm, source: Path) -> None:
    """Feed ``source`` to a VM started with ``-incoming defer``; ``finish_incoming`` waits."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise BackendFailure(f"cannot read {source}: {exc.strerror}") from exc
    try:
        if os.pread(fd, 2, 0) == _GZIP_MAGIC:
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            try:
                vm.helpers.append(Helper(["gzip", "-dc"], stdin=fd, stdout=write_end))
            finally:
                os.close(write_end)
            try:
                await vm.monitor.send_fd(_RESTORE_FD, read_end)
            finally:
                os.close(read_end)
        else:
            await vm.monitor.send_fd(_RESTORE_FD, fd)
    finally:
        os.close(fd)
    await vm.monitor.execute("migrate-incoming", {"uri": f"fd:{_RESTORE_FD}"})


async def _reap_helpers(vm: QemuVm) -> None:
    """The restore stream's gzip is done once qemu has loaded the state: qemu checks the
    stream itself (a truncated or corrupt one fails the load), so gzip's own exit status is only
    worth a line in the log (it may even see EPIPE if qemu stops reading at its end marker)."""
    for helper in vm.helpers:
        try:
            await helper.wait(5.0)
        except BackendFailure as exc:
            log.warning("instance %s: after the restore: %s", vm.iid, exc.message)
    vm.helpers.clear()


async def listen(vm: QemuVm, ticket: MigrationTicket) -> None:
    """Wait for a live migration on the ticket's address (one connection)."""
    await vm.monitor.execute("migrate-incoming", {"uri": f"tcp:{_host(ticket.host)}:{ticket.port}"})


async def finish_incoming(vm: QemuVm, timeout: float) -> None:
    """Wait until the incoming state is in, then run the VM."""
    try:
        status = await wait_state(vm, lambda status: status != "inmigrate", timeout)
        await _reap_helpers(vm)
        if status != "running":
            await vm.monitor.execute("cont")
    except BackendFailure as exc:
        raise BackendFailure(f"{exc.message} ({tail(vm.paths.log)})") from exc
    vm.state = VmState.running


async def send(
    vm: QemuVm,
    ticket: MigrationTicket,
    *,
    bandwidth_mb: int,
    timeout: float,
    persist: Persist,
) -> MigrationStats:
    """Live-migrate to ``ticket``; the VM is stopped here when this returns. The migration is
    recorded in the state file first (``persist``), as for ``save``."""
    was_running = vm.state is VmState.running
    where = f"migrating instance {vm.iid} to {ticket.host}:{ticket.port}"
    vm.outgoing = Outgoing("migrate", None, was_running)
    persist()
    vm.state = VmState.migrating
    try:
        await _configure(vm, bandwidth_mb)
        await vm.monitor.execute("migrate", {"uri": f"tcp:{_host(ticket.host)}:{ticket.port}"})
        info = await _finish(vm, timeout)
        if info.get("status") != "completed":
            raise BackendFailure(_failure(info, where, timeout))
    except BaseException:
        await _run_on(vm, was_running)
        _forget_outgoing(vm, persist)
        raise
    moved = [info.get(part, {}).get("transferred") for part in ("ram", "disk")]
    return MigrationStats(
        total_seconds=float(info.get("total-time", 0)) / 1000,
        downtime_ms=None if info.get("downtime") is None else float(info["downtime"]),
        transferred_bytes=sum(int(n) for n in moved if n is not None) or None,
    )


async def conclude(vm: QemuVm, *, bandwidth_mb: int, timeout: float, persist: Persist) -> None:
    """See a transfer to its end that an earlier node manager started (``vm.outgoing``, read
    back from the state file) and QEMU carried on alone: wait while it runs (at this driver's
    bandwidth), then, for a suspend, make the file whole at its target (``_seal``). Returns
    when the VM is all sent, so that the caller ends it; otherwise the VM runs on if it ran,
    no suspend file is left, and this raises ``BackendFailure``."""
    out = vm.outgoing
    if out is None:
        raise BackendFailure(f"instance {vm.iid} is not sending itself anywhere")
    what = f"{'suspending' if out.kind == 'suspend' else 'migrating'} instance {vm.iid}"
    try:
        info = await vm.monitor.execute("query-migrate")
        if info.get("status", "none") not in (*_DONE, "none"):
            limit = {"max-bandwidth": bandwidth_mb * 2**20}
            await vm.monitor.execute("migrate-set-parameters", limit)
            info = await _finish(vm, timeout)
        if info.get("status", "none") == "none":
            raise BackendFailure(f"{what}: the node manager stopped before QEMU began sending")
        if info.get("status") != "completed":
            raise BackendFailure(_failure(info, what, timeout))
        if out.target is not None:
            await _seal(out.target, out.helper, timeout)
    except BaseException:
        if out.target is not None:
            _partial(out.target).unlink(missing_ok=True)
            await _drop_writer(vm, out.helper)
        await _run_on(vm, out.was_running)
        _forget_outgoing(vm, persist)
        raise


async def _seal(target: Path, helper: tuple[int, int] | None, timeout: float) -> None:
    """Turn a suspend's ``.partial`` file that QEMU finished into ``target``: wait for the gzip
    that wrote it (no longer our child) to end, check the stream is whole (``gzip -t``), then
    sync and rename, as ``save`` would have."""
    partial = _partial(target)
    if not partial.exists() and target.exists():
        return  # renamed before the node manager died
    if helper is not None:
        writer = _writer(helper)
        if writer is not None:
            try:
                if not await writer.wait(timeout):
                    raise BackendFailure(f"gzip did not finish writing {partial.name}")
            finally:
                writer.close()
        fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            check = Helper(["gzip", "-t"], stdin=fd, stdout=null)
        finally:
            os.close(fd)
            os.close(null)
        await check.wait(timeout)
    fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    partial.replace(target)


async def _drop_writer(vm: QemuVm, helper: tuple[int, int] | None) -> None:
    """After a suspend that will not be finished: end its gzip, and drop the pipe's end that
    QEMU holds if it never began sending (``getfd``; an unknown name is no error worth more
    than a debug line)."""
    writer = _writer(helper)
    if writer is not None:
        writer.signal(signal.SIGKILL)
        writer.close()
    try:
        await vm.monitor.execute("closefd", {"fdname": _SUSPEND_FD})
    except BackendFailure as exc:
        log.debug("instance %s: closefd: %s", vm.iid, exc.message)


def _writer(helper: tuple[int, int] | None) -> Process | None:
    """The suspend's gzip an earlier node manager started, if it still runs (pid and start
    time as ``Outgoing.helper`` recorded them)."""
    return Process.attach(helper[0], start_time=helper[1]) if helper is not None else None


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
