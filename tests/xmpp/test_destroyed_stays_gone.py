"""A destroyed instance is not published as ``instance.created`` again.

Seen once in a live run: the XMPP publisher sent ``instance.created`` for an instance it had
sent ``instance.destroyed`` for. The one other source of a new record than a create is an
adoption: a node manager reports a VM the store has no record of and no history of (a store
restored from an old backup), and the cluster manager takes it in. A heartbeat the node
manager assembled before a destroy and the cluster manager read after it is such a report:
the VM is still in it, its record is gone. Unless the destroy leaves a trace in the history,
the instance comes back as Running (adopted) and is published as created.

Driven through the real HTTP app over a SQLite store, with node managers as a script
(``FakeNodes``) and the real ``Publisher`` subscribed to the cluster manager's event hub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tashi.domain.clock import FakeClock
from tashi.domain.states import InstanceState
from tashi.xmpp.outbox import Outbox
from tashi.xmpp.publisher import Publisher
from tashi.xmpp.session import Account, Session
from tests.api.conftest import Api, start_api
from tests.api.test_instances import create, force_state
from tests.api.test_nodes import register, report
from tests.clustermanager.fakenodes import FakeNodes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Api, FakeClock, FakeNodes, Outbox]]:
    clock, nodes = FakeClock(), FakeNodes()
    for api in start_api(
        "sqlite",
        tmp_path,
        clock=clock,
        nodes=lambda _db: nodes,
        expire_host_time=30.0,
        reconcile_grace=5.0,
    ):
        outbox = Outbox(100)
        session = Session(Account("publisher@tashi.test", "unused"))  # never connected

        async def no_layout() -> tuple[list[Any], list[Any]]:
            return [], []

        Publisher(session, outbox, "ism@tashi.test", no_layout).subscribe(api.service.events)
        yield api, clock, nodes, outbox


def test_a_heartbeat_from_before_a_destroy_does_not_bring_the_instance_back(
    cluster: tuple[Api, FakeClock, FakeNodes, Outbox],
) -> None:
    api, clock, nodes, outbox = cluster
    node = api.user("node1", role="node")
    hid = register(api, node).json()["hostId"]
    iid = create(api, api.admin, "web").json()["id"]
    force_state(api, iid, InstanceState.Activating, host=hid)
    force_state(api, iid, InstanceState.Running)
    nodes.on(hid)[iid] = 77
    clock.advance(10)  # past the reconcile grace
    stale = {"vms": [report(iid, "running", 77)]}  # the node's view before the destroy

    assert api.call("DELETE", f"/v1/instances/{iid}", api.admin).status_code == 200
    assert ("destroy", hid, iid) in nodes.calls and iid not in nodes.on(hid)
    beat = api.call("POST", f"/v1/nodes/{hid}/heartbeat", node, json=stale)
    assert beat.status_code == 200, beat.text

    published = [
        (d["type"], d["previous"], d["current"])
        for d in outbox.snapshot()
        if d.get("instanceId") == iid
    ]
    assert published == [
        ("instance.created", None, "Pending"),
        ("instance.state", "Pending", "Activating"),
        ("instance.state", "Activating", "Running"),
        ("instance.state", "Running", "Destroying"),
        ("instance.destroyed", "Destroying", "Exited"),
    ]  # without the fix: then ("instance.created", None, "Running"), the adopted VM
    assert api.call("GET", f"/v1/instances/{iid}", api.admin).status_code == 404
    kinds = [e["kind"] for e in api.call("GET", f"/v1/instances/{iid}/history", api.admin).json()]
    assert kinds == ["destroyed", "fenced"], kinds  # the stale VM was stopped, not taken in
    assert nodes.calls.count(("destroy", hid, iid)) == 2
