"""An XMPP test client written straight on slixmpp (not on ``tashi.xmpp.session``, the code
under test): the SLA@SOI ISM of the live tests, which sends commands and reads the answers of
``tashi-xmpp`` and the events of the cluster manager's publisher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import slixmpp


@dataclass(frozen=True)
class Received:
    sender: str  # bare JID
    body: str
    at: float  # time.monotonic()

    @property
    def document(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict), self.body
        return value


class Ism(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, ca_file: str) -> None:
        super().__init__(f"{jid}/ism-test", password)
        self.enable_direct_tls = False
        self.enable_plaintext = False
        self.ca_certs = ca_file  # type: ignore[assignment]
        self.inbox: list[Received] = []
        self._arrived = asyncio.Event()
        self._ready = asyncio.Event()
        self.register_plugin("xep_0060")
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("message", self._message)

    async def _started(self, _event: object) -> None:
        self.send_presence()
        self._ready.set()

    def _message(self, msg: slixmpp.Message) -> None:
        if msg["type"] in ("chat", "normal") and msg["body"]:
            sender = str(msg["from"]).partition("/")[0]
            self.inbox.append(Received(sender, str(msg["body"]), time.monotonic()))
            self._arrived.set()

    async def start(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.connect(host, port)
        await asyncio.wait_for(self._ready.wait(), timeout)

    def say(self, to: str, body: str) -> None:
        self.send_message(mto=slixmpp.JID(to), mbody=body, mtype="chat")

    async def wait_for(
        self, what: str, done: Callable[[list[Received]], bool], timeout: float
    ) -> list[Received]:
        """Wait until ``done(inbox)``; the inbox then (an AssertionError on the deadline)."""
        deadline = time.monotonic() + timeout
        while not done(self.inbox):
            left = deadline - time.monotonic()
            if left <= 0:
                answers = [r for r in self.inbox if '"type":' not in r.body[:12]]
                shown = "\n".join(r.body[:300] for r in answers[-30:])
                raise AssertionError(f"no {what} within {timeout} s; last answers:\n{shown}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 1.0))
        return list(self.inbox)

    def documents(self, sender: str) -> list[dict[str, Any]]:
        return [r.document for r in self.inbox if r.sender == sender]

    async def pubsub_items(self, service: str, node: str) -> list[dict[str, Any]]:
        """The JSON documents (XEP-0335) of the node's items."""
        reply = await self.plugin["xep_0060"].get_items(slixmpp.JID(service), node, timeout=10)
        out: list[dict[str, Any]] = []
        for item in reply["pubsub"]["items"]:
            payload = item.xml.find("{urn:xmpp:json:0}json")
            if payload is not None and payload.text:
                out.append(json.loads(payload.text))
        return out

    async def close(self) -> None:
        await self.disconnect(wait=2.0)
