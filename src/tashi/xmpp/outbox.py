"""A bounded queue of what waits for the XMPP server, oldest dropped first: the publisher's
events and the control daemon's answers.

The cluster manager's event handlers ``put`` a document and return at once, whatever the XMPP
server does: the queue holds at most ``size`` documents, and a ``put`` into a full queue drops
the oldest and counts it (``dropped``). The sender takes documents in order (``take``) and
gives one back at the front (``give_back``) when it could not hand it over; ``drain`` is that
sender's loop body.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Document = dict[str, Any]


class Outbox:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an outbox holds at least one document")
        self.size = size
        self._items: deque[Document] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0  # documents dropped because the queue was full
        self.put_count = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, document: Document) -> None:
        """Queue ``document``; drop (and count) the oldest first when full. Never waits."""
        if len(self._items) >= self.size:
            self._items.popleft()
            self.dropped += 1
        self._items.append(document)
        self.put_count += 1
        self._ready.set()

    async def take(self) -> Document:
        """The oldest document, waiting for one."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def give_back(self, document: Document) -> None:
        """Put ``document`` back in front (it was not sent); dropped if the queue filled up
        meanwhile, as it is then the oldest."""
        if len(self._items) >= self.size:
            self.dropped += 1
            return
        self._items.appendleft(document)
        self._ready.set()

    def snapshot(self) -> list[Document]:
        return list(self._items)


async def drain(
    outbox: Outbox, connected: asyncio.Event, send: Callable[[Document], Awaitable[bool]]
) -> None:
    """Once ``connected``, hand the documents over in order with ``send``; return when one could
    not be handed over (it is given back first): a supervised loop body, called again."""
    await connected.wait()
    while True:
        document = await outbox.take()
        if not await send(document):
            outbox.give_back(document)
            return
