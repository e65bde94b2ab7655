"""VM events outlive the node manager that owes them: kept on disk until the cluster manager
acknowledged them, sent oldest first by the next node manager after a crash."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tashi.domain.errors import Unanswered, Unavailable
from tashi.domain.ids import InstanceId
from tashi.domain.nodes import Acknowledged, NodeEvent, Registration
from tashi.nodeapi import convert
from tashi.nodeapi.schemas import RegisterOut
from tashi.nodemanager.outbox import Outbox
from tests.fixtures.reporting import reporter

pytestmark = pytest.mark.anyio

AT = datetime(2026, 12, 6, tzinfo=UTC)


def event(iid: int, kind: str = "exited") -> NodeEvent:
    return NodeEvent(instance_id=InstanceId(iid), vm_id=100 + iid, kind=kind, detail="d", at=AT)


@dataclass
class Cm:
    """Takes events in batches; ``fail`` makes the next call fail with that error, after
    (``Unanswered``) or before (``Unavailable``) it took the batch."""

    got: list[list[int]] = field(default_factory=list)
    fail: Exception | None = None

    async def register(self, request: Registration) -> Acknowledged:
        return convert.acknowledged(
            RegisterOut(hostId=1, state="Normal", heartbeatInterval=2, expireHostTime=6)
        )

    async def events(self, host_id: int, events: list[NodeEvent]) -> int:
        if isinstance(self.fail, Unanswered):
            self.got.append([e.instance_id for e in events])
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        self.got.append([e.instance_id for e in events])
        return len(events)


def test_events_are_kept_in_order_until_delivered(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for iid in (3, 1, 2):
        box.put(event(iid))
    again = Outbox(tmp_path)  # what a restarted node manager finds
    assert [e.instance_id for e in again.oldest(10)] == [3, 1, 2]
    again.delivered(2)
    again.put(event(4))
    assert [e.instance_id for e in Outbox(tmp_path).oldest(10)] == [2, 4]


def test_event_files_keep_the_node_apis_wire_form(tmp_path: Path) -> None:
    """What an older node manager left is read by a newer one, and the reverse."""
    (tmp_path / "events").mkdir()
    older = (
        '{"instanceId":7,"vmId":107,"kind":"suspended","detail":"7_vm7.gz",'
        '"at":"2026-12-06T00:00:00Z"}'
    )
    (tmp_path / "events" / "000000000000.json").write_text(older)
    box = Outbox(tmp_path)
    assert box.oldest(10) == [
        NodeEvent(instance_id=InstanceId(7), vm_id=107, kind="suspended", detail="7_vm7.gz", at=AT)
    ]
    box.put(event(1))
    written = json.loads((tmp_path / "events" / "000000000001.json").read_text())
    assert written == {
        "instanceId": 1,
        "vmId": 101,
        "kind": "exited",
        "detail": "d",
        "at": "2026-12-06T00:00:00Z",
    }


def test_an_unreadable_event_file_is_dropped_not_fatal(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put(event(1))
    (tmp_path / "events" / "000000000007.json").write_text("{not json")
    (tmp_path / "events" / ".000000000008.json.new").write_text("{")  # a put cut short
    again = Outbox(tmp_path)
    assert [e.instance_id for e in again.oldest(10)] == [1]
    again.put(event(2))
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        "000000000000.json",
        "000000000001.json",
    ]


async def test_a_restarted_node_manager_sends_what_the_dead_one_owed(tmp_path: Path) -> None:
    cm = Cm(fail=Unavailable("connection refused"))
    first = reporter(cm, tmp_path)
    await first.register()
    first.put(event(1, "suspended"))
    with pytest.raises(Unavailable):
        await first.flush()
    # killed here: the next node manager, same state directory
    second = reporter(cm, tmp_path)
    await second.register()
    assert await second.flush() == 1
    assert cm.got == [[1]]
    assert await reporter(cm, tmp_path).flush() == 0  # acknowledged: not owed any more


async def test_a_batch_whose_answer_was_lost_is_sent_again(tmp_path: Path) -> None:
    cm = Cm(fail=Unanswered("connection reset"))
    box = reporter(cm, tmp_path)
    await box.register()
    box.put(event(1))
    box.put(event(2))
    with pytest.raises(Unanswered):
        await box.flush()
    assert await box.flush() == 2
    assert cm.got == [[1, 2], [1, 2]]


async def test_events_put_before_the_registration_go_once_it_is_done(tmp_path: Path) -> None:
    """A restarted node manager finishes a suspend before it has registered: the event must
    not wait for the next one to be sent (it waited 32 s in a fault-injection round)."""
    cm = Cm()
    box = reporter(cm, tmp_path)
    sender = asyncio.create_task(box.send_events_forever(retry=0.01))
    box.put(event(1, "suspended"))  # not registered yet: nowhere to send it
    await asyncio.sleep(0)
    assert cm.got == []
    await box.register()
    async with asyncio.timeout(5):
        while cm.got != [[1]]:
            await asyncio.sleep(0.01)
    sender.cancel()
