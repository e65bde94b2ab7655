"""SLA@SOI's XMPP event publisher, inside ``tashi-cm`` (ADR 0021, docs/xmpp.md).

With ``[XMPP] enabled = True`` the cluster manager subscribes ``Publisher.on_event`` to every
event type of its hub (``clustermanager.events``). A handler runs on the writer's path (ADR
0017), so it only turns the event into a document (``documents.py``) and puts it in the
bounded ``Outbox``: it never waits for the network, and a full outbox drops its oldest
document (counted, logged once per outage, visible as a gap in ``seq``).

Two supervised loops do the rest: ``send`` hands the documents, in order, to ``recipient`` as
chat messages (and to the pubsub node if one is set) whenever the ``Session`` is connected;
``snapshot`` puts a VM-layout document in the outbox every ``layoutInterval`` seconds. The
``Session`` reconnects with back-off on its own. Losing the XMPP server thus costs the cluster
manager one deque operation per event.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from tashi.clustermanager.events import (
    HostDown,
    HostUp,
    InstanceAdapted,
    InstanceStateChanged,
    StartFailed,
    VmStopped,
)
from tashi.clustermanager.service import ClusterService
from tashi.config.xmpp import XmppSettings
from tashi.domain.errors import InvalidInput
from tashi.domain.models import Host, Instance
from tashi.runtime.hub import EventHub
from tashi.runtime.tasks import Supervisor
from tashi.xmpp import documents
from tashi.xmpp.outbox import Document, Outbox, drain
from tashi.xmpp.session import Account, Session

log = logging.getLogger(__name__)

#: every event type the publisher sends (subscribed in this order)
EVENT_TYPES = (InstanceStateChanged, HostUp, HostDown, StartFailed, VmStopped, InstanceAdapted)

ReadLayout = Callable[[], Awaitable[tuple[Sequence[Host], Sequence[Instance]]]]


class Publisher:
    def __init__(
        self,
        session: Session,
        outbox: Outbox,
        recipient: str,
        read_layout: ReadLayout,
        *,
        pubsub: tuple[str, str] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.session = session
        self.outbox = outbox
        self._recipient = recipient
        self._read_layout = read_layout
        self._pubsub = pubsub
        self._now = now
        self._seq = itertools.count(1)
        self._dropped_told = 0  # drops already logged
        self.sent = 0

    def subscribe(self, hub: EventHub) -> None:
        for kind in EVENT_TYPES:
            hub.subscribe(kind, self.on_event)

    async def on_event(self, event: object) -> None:
        """A hub handler: queue the event's document (never waits)."""
        document = documents.of_event(event)
        if document is not None:
            self._put(document)

    def _put(self, document: Document) -> None:
        self.outbox.put(documents.stamped(document, next(self._seq), self._now()))
        dropped = self.outbox.dropped
        if dropped and (self._dropped_told == 0 or dropped - self._dropped_told >= 1000):
            log.warning(
                "XMPP: the event queue (%d) is full: %d events dropped so far",
                self.outbox.size,
                dropped,
            )
            self._dropped_told = dropped

    async def snapshot(self) -> None:
        """Queue one VM-layout document (a supervised loop body, every ``layoutInterval``)."""
        hosts, instances = await self._read_layout()
        self._put(documents.layout(hosts, instances))

    async def send(self) -> None:
        """Hand the queued documents over, in order, while connected (a supervised loop body:
        it returns when the connection is lost, to be called again)."""
        await drain(self.outbox, self.session.connected, self._send_one)

    async def _send_one(self, document: Document) -> bool:
        if not self.session.send(self._recipient, _json(document)):
            return False
        self.sent += 1
        if self._pubsub is not None:
            await self.session.publish(*self._pubsub, document)
        return True


def _json(document: Document) -> str:
    return json.dumps(document, separators=(",", ":"))


def start(xmpp: XmppSettings, service: ClusterService, supervisor: Supervisor) -> Publisher:
    """The publisher of ``[XMPP]`` (``enabled``), subscribed to ``service``'s hub, its
    connection, sender and layout snapshots run by ``supervisor`` (``InvalidInput`` for a
    missing jid, pwd or recipient)."""
    if not xmpp.recipient:
        raise InvalidInput("[XMPP] enabled = True needs a recipient")
    account = Account(
        xmpp.jid,
        xmpp.pwd,
        server=xmpp.server,
        port=xmpp.port,
        ca_file=xmpp.ca_file,
        resource="tashi-cm",
    )
    session = Session(account, presence=False, reconnect_max=xmpp.reconnect_max)

    async def read_layout() -> tuple[Sequence[Host], Sequence[Instance]]:
        return await service.db.read(lambda tx: (tx.hosts.list(), tx.instances.find()))

    pubsub = (xmpp.pubsub_service, xmpp.pubsub_node) if xmpp.pubsub_service else None
    publisher = Publisher(
        session, Outbox(xmpp.queue_size), xmpp.recipient, read_layout, pubsub=pubsub
    )
    publisher.subscribe(service.events)
    supervisor.every("xmpp-session", 0.0, session.run)
    supervisor.every("xmpp-publish", 0.05, publisher.send)
    if xmpp.layout_interval > 0:
        supervisor.every("xmpp-layout", xmpp.layout_interval, publisher.snapshot)
    log.info("XMPP: publishing events as %s to %s", xmpp.jid, xmpp.recipient)
    return publisher
