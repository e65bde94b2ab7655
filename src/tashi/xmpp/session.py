"""One XMPP account's connection, kept up: the one seam between Tashi and slixmpp.

``Session.run`` logs in (``[XMPP] jid``/``pwd``, STARTTLS required, the server's certificate
checked against ``caFile`` or the system's authorities), stays connected, and after a lost
connection or a failed attempt tries again after a back-off that doubles from 0.5 s up to
``reconnectMax``. Each attempt uses a fresh slixmpp client, so that slixmpp's own reconnection
schedule (up to five minutes between tries) never decides when Tashi's XMPP agents come back.

Received chat messages go to ``on_message(sender, body)`` (``sender`` is the full JID, so the
answer reaches the same client); the control daemon filters senders, the publisher listens to
nobody. ``send`` hands a chat message to the connection if there is one (``False`` if not); a
connection lost meanwhile may lose what was in flight — the publisher counts what it could
not hand over, the daemon logs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

from tashi.domain.errors import InvalidInput

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5
ATTEMPT_TIMEOUT = 15.0  # one connection, TLS and log-in
JSON_NS = "urn:xmpp:json:0"  # XEP-0335, the element a pubsub item's JSON travels in

OnMessage = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Account:
    """Where and as whom to log in (from ``[XMPP]``)."""

    jid: str
    password: str = field(repr=False)
    server: str = ""
    port: int = 5222
    ca_file: str = ""
    resource: str = "tashi"

    def __post_init__(self) -> None:
        local, at, domain = self.jid.partition("@")
        if not (local and at and domain) or "/" in domain:
            raise InvalidInput(f"[XMPP] jid = {self.jid!r}: expected user@domain")
        if not self.password:
            raise InvalidInput("[XMPP] pwd is empty")


def backoff(failures: int, cap: float, draw: float) -> float:
    """Seconds before the next attempt after ``failures`` failures in a row (``draw`` in
    [0, 1): each wait is between half and all of the doubled delay)."""
    delay: float = min(cap, FIRST_BACKOFF * 2.0 ** max(0, failures - 1))
    return delay * (0.5 + draw / 2)


class _Client(slixmpp.ClientXMPP):
    """One attempt's slixmpp client, with the events ``Session`` waits for."""

    def __init__(self, account: Account, on_message: OnMessage | None, presence: bool) -> None:
        super().__init__(f"{account.jid}/{account.resource}", account.password)
        self.enable_direct_tls = False  # STARTTLS on the client port, required below
        self.enable_plaintext = False
        if account.ca_file:
            self.ca_certs = Path(account.ca_file)
        self.register_plugin("xep_0060")  # pubsub
        self.ready = asyncio.Event()
        self.gone = asyncio.Event()
        self.why = ""
        self._on_message = on_message
        self._presence = presence
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("message", self._message)
        for name in ("connection_failed", "failed_all_auth", "stream_error", "disconnected"):
            self.add_event_handler(name, self._failed(name))

    async def _started(self, _event: object) -> None:
        if self._presence:
            self.send_presence()
        self.ready.set()

    def _failed(self, name: str) -> Callable[[object], None]:
        def handler(event: object) -> None:
            self.why = self.why or (f"{name}: {event}" if event else name)
            self.gone.set()

        return handler

    async def _message(self, msg: slixmpp.Message) -> None:
        if self._on_message is None or msg["type"] not in ("chat", "normal"):
            return
        body = str(msg["body"])
        if body:
            await self._on_message(str(msg["from"]), body)


class Session:
    """The kept-up connection of one account (see the module's notes)."""

    def __init__(
        self,
        account: Account,
        *,
        on_message: OnMessage | None = None,
        presence: bool = True,
        reconnect_max: float = 30.0,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.account = account
        self._on_message = on_message
        self._presence = presence
        self._cap = reconnect_max
        self._draw = draw
        self._client: _Client | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # sessions started so far

    async def run(self) -> None:
        """Stay connected until cancelled."""
        failures = 0
        while True:
            if await self._attempt():
                failures = 0
            failures += 1
            await asyncio.sleep(backoff(failures, self._cap, self._draw()))

    async def _attempt(self) -> bool:
        """One connection: ``True`` if it was established (and has ended since)."""
        client = _Client(self.account, self._on_message, self._presence)
        # The current client from the start: messages kept offline for us arrive as soon as the
        # session starts, and their answers must go out on it (``send`` checks it is ready).
        self._client = client
        host = self.account.server or self.account.jid.partition("@")[2]
        client.connect(host, self.account.port)
        try:
            try:
                await asyncio.wait_for(_first(client.ready, client.gone), ATTEMPT_TIMEOUT)
            except TimeoutError:
                client.why = client.why or "no session within the time allowed"
            if not client.ready.is_set() or client.gone.is_set():
                log.warning(
                    "XMPP: cannot log in as %s at %s: %s", self.account.jid, host, client.why
                )
                return False
            self.connections += 1
            self.connected.set()
            log.info("XMPP: logged in as %s at %s:%d", self.account.jid, host, self.account.port)
            await client.gone.wait()
            log.warning("XMPP: connection to %s lost: %s", host, client.why)
            return True
        finally:
            self.connected.clear()
            self._client = None
            client.cancel_connection_attempt()
            client.abort()
            await _ended(client)

    def _live(self) -> _Client | None:
        """The client whose session has started and not ended, if any."""
        client = self._client
        if client is None or not client.ready.is_set() or client.gone.is_set():
            return None
        return client

    def send(self, to: str, body: str) -> bool:
        """Send a chat message now; ``False`` (and nothing sent) when not connected."""
        client = self._live()
        if client is None:
            return False
        client.send_message(mto=slixmpp.JID(to), mbody=body, mtype="chat")
        return True

    async def publish(self, service: str, node: str, document: object) -> bool:
        """Publish ``document`` as a pubsub item (XEP-0060, JSON as XEP-0335) on ``node`` of
        ``service``, creating the node once if it is missing; ``False`` when not connected or
        refused (logged)."""
        client = self._live()
        if client is None:
            return False
        item = ET.Element(f"{{{JSON_NS}}}json")
        item.text = json.dumps(document, separators=(",", ":"))
        pubsub: Any = client.plugin["xep_0060"]  # slixmpp's XEP-0060 plugin has no annotations
        try:
            await pubsub.publish(service, node, payload=item, timeout=10)
        except IqError as exc:
            if exc.condition != "item-not-found":
                log.warning(
                    "XMPP: pubsub %s/%s refused the item: %s %s",
                    service,
                    node,
                    exc.condition,
                    exc.text,
                )
                return False
            try:
                await pubsub.create_node(service, node, timeout=10)
                await pubsub.publish(service, node, payload=item, timeout=10)
            except (IqError, IqTimeout) as again:
                log.warning("XMPP: pubsub %s/%s: %s", service, node, again)
                return False
        except IqTimeout:
            log.warning("XMPP: pubsub %s/%s did not answer", service, node)
            return False
        return True


async def _ended(client: _Client) -> None:
    """Wait for the end of the task slixmpp keeps for an attempt's outgoing stanzas (it would
    otherwise be destroyed pending, with an error in the log, when the client is dropped)."""
    filters: asyncio.Future[None] | None = getattr(client, "_run_out_filters", None)
    if filters is not None and not filters.done():
        filters.cancel()
        await asyncio.gather(filters, return_exceptions=True)


async def _first(*events: asyncio.Event) -> None:
    """Return when any of ``events`` is set."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
