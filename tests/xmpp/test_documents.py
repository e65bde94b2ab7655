"""The publisher's JSON documents (``tashi.xmpp.documents``) for each hub event and the layout,
and the order and numbering the publisher gives them (``Publisher.on_event``)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from tashi.clustermanager.events import (
    HostDown,
    HostUp,
    InstanceAdapted,
    InstanceStateChanged,
    StartFailed,
)
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import DiskConfig, Host, Instance
from tashi.domain.states import InstanceState as S
from tashi.runtime.hub import EventHub
from tashi.xmpp import documents
from tashi.xmpp.outbox import Outbox
from tashi.xmpp.publisher import Publisher
from tashi.xmpp.session import Account, Session


def vm(state: S, host: int | None = 1) -> Instance:
    return Instance(
        id=InstanceId(7),
        name="web",
        user_id=UserId(2),
        state=state,
        cores=1,
        memory=128,
        disks=(DiskConfig("tiny.qcow2"),),
        nics=(),
        host_id=None if host is None else HostId(host),
    )


def changed(previous: S | None, current: S, host: int | None = 1) -> InstanceStateChanged:
    instance = None if current is S.Exited else vm(current, host)
    return InstanceStateChanged(InstanceId(7), previous, current, instance)


def test_instance_event_types() -> None:
    assert documents.of_event(changed(None, S.Pending, None))["type"] == "instance.created"  # type: ignore[index]
    assert documents.of_event(changed(S.Running, S.MigratePrep))["type"] == "instance.state"  # type: ignore[index]
    migrated = documents.of_event(changed(S.MigrateTrans, S.Running, 2))
    assert migrated == {
        "type": "instance.migrated",
        "instanceId": 7,
        "previous": "MigrateTrans",
        "current": "Running",
        "instance": {
            "id": 7,
            "name": "web",
            "userId": 2,
            "state": "Running",
            "hostId": 2,
            "cores": 1,
            "memory": 128,
            "cpuShare": 1024,
        },
    }
    destroyed = documents.of_event(changed(S.Destroying, S.Exited))
    assert destroyed == {
        "type": "instance.destroyed",
        "instanceId": 7,
        "previous": "Destroying",
        "current": "Exited",
    }


def test_host_and_reason_events_and_the_layout() -> None:
    host = Host(id=HostId(1), name="h1", up=True, memory=2048, cores=4)
    assert documents.of_event(HostUp(host))["host"]["name"] == "h1"  # type: ignore[index]
    assert documents.of_event(HostDown(host))["type"] == "host.down"  # type: ignore[index]
    failed = documents.of_event(StartFailed(vm(S.Activating), "no disk"))
    assert failed is not None and failed["reason"] == "no disk"
    assert documents.of_event(object()) is None
    adapted = documents.of_event(InstanceAdapted(vm(S.Running), {"cpuShare": 2048}))
    assert adapted is not None and adapted["changes"] == {"cpuShare": 2048}
    layout = documents.layout([host], [vm(S.Running), vm(S.Pending, None)])
    assert [i["state"] for i in layout["hosts"][0]["instances"]] == ["Running"]
    assert [i["state"] for i in layout["unplaced"]] == ["Pending"]
    json.dumps(layout)  # JSON as it is


def test_the_publisher_queues_every_event_in_order_with_a_sequence() -> None:
    async def scenario() -> list[dict[str, object]]:
        hub = EventHub()
        session = Session(Account("p@example.org", "secret"))  # never connected here
        outbox = Outbox(3)

        async def no_layout() -> tuple[list[Host], list[Instance]]:
            return [], []

        publisher = Publisher(
            session,
            outbox,
            "ism@example.org",
            no_layout,
            now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        )
        publisher.subscribe(hub)
        for event in (
            changed(None, S.Pending, None),
            changed(S.Pending, S.Activating),
            changed(S.Activating, S.Running),
            changed(S.Running, S.Destroying),
            changed(S.Destroying, S.Exited),
        ):
            await hub.publish(event)  # returns at once: nobody is connected
        assert outbox.dropped == 2
        return outbox.snapshot()

    kept = asyncio.run(scenario())
    assert [d["seq"] for d in kept] == [3, 4, 5]  # the two oldest dropped: a gap from 1
    assert [d["current"] for d in kept] == ["Running", "Destroying", "Exited"]
    assert kept[0]["at"] == "2026-01-01T00:00:00+00:00"
