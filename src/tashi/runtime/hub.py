"""One small in-process event hub: typed events, handlers subscribed by event type.

A service publishes what happened (a frozen dataclass: ``clustermanager.events``) and does not
know who listens; whoever reacts (a group's teardown, and in the coming issues accounting, the
XMPP publisher, the stream API, metrics) subscribes to the event's type, exactly: a handler of
``A`` is not called for a subclass of ``A``.

``publish`` awaits the handlers of the event one after the other, in the order they
subscribed, so a handler sees the events in the order they were published and the publisher
goes on only once every handler has run. It is a supervision boundary: a handler that raises is
logged with its traceback and the event, and the next handler runs as if nothing happened; the
publisher never sees the failure. Cancellation is not a failure and goes through.

Used from the event loop only; subscribing is wiring, done by the composition root
(``clustermanager.service.build_service``) before the first event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")

Handler = Callable[[E], Awaitable[object]]


class EventHub:
    def __init__(self) -> None:
        self._handlers: dict[type[Any], list[Handler[Any]]] = {}

    def subscribe(self, kind: type[E], handler: Handler[E]) -> None:
        """Call ``handler`` with every event of type ``kind`` published from now on."""
        self._handlers.setdefault(kind, []).append(handler)

    def wants(self, kind: type[Any]) -> bool:
        """Whether anyone listens to ``kind`` (a publisher may skip building such events)."""
        return bool(self._handlers.get(kind))

    async def publish(self, event: object) -> None:
        """Hand ``event`` to each of its type's handlers in turn (see the module's notes)."""
        for handler in tuple(self._handlers.get(type(event), ())):
            try:
                await handler(event)
            except Exception:  # a supervision boundary: one handler never stops the others
                log.exception("a handler of %s failed on %r", type(event).__name__, event)
