"""QMP to one VM: the driver's only seam to ``qemu.qmp``.

Every exception of the library (and of the socket under it, and a command that takes longer
than ``[Qemu] monitorTimeout``) leaves this module as ``BackendFailure`` naming the command and
QEMU's own message, ``raise ... from exc``. The connection is opened lazily and reopened when it
was lost while qemu lives on (a node manager that restarts reconnects the same way).

Events (``SHUTDOWN``, ``STOP``, ``RESUME``, ...) are handed to a callback as they arrive, from
``qemu.qmp``'s own reader task: the listener keeps no history and no queue, so a VM that runs
for months costs no memory for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener, QMPClient, QMPError, Runstate
from qemu.qmp.message import Message

from tashi.domain.errors import BackendFailure

log = logging.getLogger(__name__)
# qemu.qmp says at INFO that a reader saw end-of-file, which is every VM's normal end.
logging.getLogger("qemu.qmp").setLevel(logging.WARNING)

EventCallback = Callable[[str, Mapping[str, Any]], None]
_EVENTS = ("SHUTDOWN", "STOP", "RESUME", "RESET", "MIGRATION", "DEVICE_DELETED")


class _Sink(EventListener):
    """Calls back at once instead of queueing (see the module doc)."""

    def __init__(self, callback: EventCallback) -> None:
        super().__init__(names=_EVENTS)
        self._callback = callback

    async def put(self, event: Message) -> None:
        if self.accept(event):
            data = event.get("data", {})
            self._callback(str(event["event"]), data if isinstance(data, dict) else {})


class Monitor:
    def __init__(
        self,
        socket: Path,
        *,
        name: str,
        timeout: float,
        on_event: EventCallback | None = None,
    ) -> None:
        self.socket, self.name, self.timeout = socket, name, timeout
        self._client = QMPClient(name)
        if on_event is not None:
            self._client.register_listener(_Sink(on_event))
        self._connecting = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._client.runstate is Runstate.RUNNING

    async def connect(self) -> None:
        """Open the session (again, after a loss); ``BackendFailure`` if qemu does not answer."""
        async with self._connecting:
            if self.connected:
                return
            if self._client.runstate is not Runstate.IDLE:
                await self._quiet_disconnect()
            try:
                async with asyncio.timeout(self.timeout):
                    await self._client.connect(str(self.socket))
            except (QMPError, OSError, EOFError, TimeoutError) as exc:
                raise BackendFailure(
                    f"{self.name}: cannot reach QMP at {self.socket}: {exc}"
                ) from exc

    async def execute(
        self, command: str, arguments: Mapping[str, object] | None = None, *, timeout: float = 0
    ) -> Any:
        """Run one QMP command and return its answer (``timeout`` 0: ``monitorTimeout``)."""
        await self.connect()
        try:
            async with asyncio.timeout(timeout or self.timeout):
                return await self._client.execute(command, arguments)
        except (QMPError, OSError, EOFError, TimeoutError) as exc:
            raise BackendFailure(f"{self.name}: QMP {command} failed: {_describe(exc)}") from exc

    async def send_fd(self, fdname: str, fd: int) -> None:
        """Hand ``fd`` to qemu under ``fdname`` (SCM_RIGHTS, then ``getfd``), for an
        ``fd:<fdname>`` migration URI. Our copy stays open: the caller closes it."""
        await self.connect()
        try:
            self._client.send_fd_scm(fd)
        except (QMPError, OSError) as exc:
            raise BackendFailure(f"{self.name}: cannot pass a file descriptor: {exc}") from exc
        await self.execute("getfd", {"fdname": fdname})

    async def close(self) -> None:
        """Close the session; a peer that went away (qemu quit) is not an error here."""
        async with self._connecting:
            if self._client.runstate is not Runstate.IDLE:
                await self._quiet_disconnect()

    async def _quiet_disconnect(self) -> None:
        try:
            await self._client.disconnect()
        except (QMPError, OSError, EOFError) as exc:
            log.debug("%s: QMP session ended with %r", self.name, exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
