"""How a Tashi server stops: within about a second of SIGTERM, with every request answered.

Left to itself, uvicorn stops by closing its listener and then waiting, without limit, for the
requests it holds; the cluster manager took 19 s to stop, waiting for the scheduler's 25 s
change-feed long-poll, while its API was gone. Then uvicorn raises the signal again, which ends
the process before the daemon's own clean-up (its background tasks, its database threads, its
hold on the database) has run. ``Server`` is uvicorn's server with three changes:

1. The moment it starts to stop it calls its ``stopping`` callbacks: the cluster manager's
   change feed answers its long-polls there (``ChangeFeed.close``), so a scheduler gets its
   answer instead of a reset connection.
2. Requests still running after ``STOP_GRACE`` seconds are cancelled, and ``AnswerOnStop`` (an
   ASGI middleware ``Server`` puts around the app) answers each one whose answer had not begun
   with ``unanswered`` (503): the server stopped before it finished, so what it asked for may
   or may not have been done. Clients take that as they take a connection cut mid-request
   (``Unanswered``); the cluster manager is built to take up work that a crash cut short
   (deadlines, reconciliation), and this cut is no different.
3. A SIGTERM or SIGINT only stops the server; it is not raised again afterwards, so the code
   after ``serve()`` runs and the daemon exits 0. A second SIGINT still forces the stop
   (uvicorn's ``handle_exit``).

``tashi-cm`` runs this server. ``tashi-nm`` still runs uvicorn's own, which stops in a fraction
of a second unless a request is in progress; a live migration is one, and cutting it after a
second is a decision for the migration's owners, not for this module.

Neighbours: ``server`` (the uvicorn configuration and the HTTP protocol), ``limits``
(``refusal``, the error answer this module sends too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tashi.domain.errors import Unanswered
from tashi.web.limits import HttpLimits, refusal
from tashi.web.server import server_config

log = logging.getLogger(__name__)

STOP_GRACE = 1  # seconds the requests in progress have to finish (whole: uvicorn takes an int)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class AnswerOnStop:
    """ASGI middleware: a request cancelled because its server stops is answered (see the
    module doc). Any other cancellation goes on as it came."""

    def __init__(self, app: ASGIApp, what: str) -> None:
        self.app = app
        self.what = what  # the server, as its clients know it ("the cluster manager")
        self.stopping = False  # set by ``Server`` once it stops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            if started or not self.stopping:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the stop is answered here: this task ends normally
            error = Unanswered(
                f"{self.what} stopped before it finished this request; it may or may not have"
                " been carried out"
            )
            log.info("%s %s: answered unfinished at stop", scope["method"], scope["path"])
            for message in refusal(error):
                await send(message)


class Server(uvicorn.Server):
    """uvicorn's server for ``app`` (configured by ``server_config``), stopped as the module doc
    says. ``what`` names the server in the answer to a cut request; ``stopping`` are called,
    in order, the moment it starts to stop."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        what: str,
        host: str,
        port: int,
        limits: HttpLimits,
        stopping: Sequence[Callable[[], None]] = (),
        grace: int = STOP_GRACE,
        signals: bool = True,
    ) -> None:
        self.guard = AnswerOnStop(app, what)
        config = server_config(self.guard, host=host, port=port, limits=limits)
        config.timeout_graceful_shutdown = max(0, grace)
        super().__init__(config)
        self._stopping = list(stopping)
        self._signals = signals  # False: a second server of the process, stopped by the first

    def add_stopping(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` too the moment this server starts to stop."""
        self._stopping.append(callback)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.guard.stopping = True
        for callback in self._stopping:
            callback()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own version raises the signal again once the server has stopped: with the
        # default SIGTERM action that ends the process before the daemon's clean-up runs.
        if not self._signals or threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only (a server in a test's thread)
            return
        loop = asyncio.get_running_loop()
        before = {sig: signal.getsignal(sig) for sig in SIGNALS}
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig, handler in before.items():
                loop.remove_signal_handler(sig)
                if handler is not None:  # None: not set from Python, nothing to put back
                    signal.signal(sig, handler)
