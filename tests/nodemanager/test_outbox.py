"""VM events outlive the node manager that owes them: kept on disk until the cluster manager
acknowledged them, sent oldest first by the next node manager after a crash."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tashi.domain.errors import Unanswered, Unavailable
from tashi.nodeapi.schemas import EventsIn, RegisterIn, RegisterOut, VmEvent
from tashi.nodemanager.outbox import Outbox
from tests.fixtures.reporting import reporter

pytestmark = pytest.mark.anyio

AT = datetime(2026, 12, 6, tzinfo=UTC)


def event(iid: int, kind: str = "exited") -> VmEvent:
    return VmEvent(instanceId=iid, vmId=100 + iid, kind=kind, detail="d", at=AT)


@dataclass
class Cm:
    """Takes events in batches; ``fail`` makes the next call fail with that error, after
    (``Unanswered``) or before (``Unavailable``) it took the batch."""

    got: list[list[int]] = field(default_factory=list)
    fail: Exception | None = None

    async def register(self, request: RegisterIn) -> RegisterOut:
        return RegisterOut(hostId=1, state="Normal", heartbeatInterval=2, expireHostTime=6)

    async def events(self, host_id: int, body: EventsIn) -> int:
        if isinstance(self.fail, Unanswered):
            self.got.append([e.instanceId for e in body.events])
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        self.got.append([e.instanceId for e in body.events])
        return len(body.events)


def test_events_are_kept_in_order_until_delivered(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for iid in (3, 1, 2):
        box.put(event(iid))
    again = Outbox(tmp_path)  # what a restarted node manager finds
    assert [e.instanceId for e in again.oldest(10)] == [3, 1, 2]
    again.delivered(2)
    again.put(event(4))
    assert [e.instanceId for e in Outbox(tmp_path).oldest(10)] == [2, 4]


def test_an_unreadable_event_file_is_dropped_not_fatal(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put(event(1))
    (tmp_path / "events" / "000000000007.json").write_text("{not json")
    (tmp_path / "events" / ".000000000008.json.new").write_text("{")  # a put cut short
    again = Outbox(tmp_path)
    assert [e.instanceId for e in again.oldest(10)] == [1]
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
