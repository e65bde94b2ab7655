"""Node registration, heartbeats, VM events and host liveness through the real HTTP app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tashi
from tashi.domain.clock import FakeClock
from tashi.domain.states import InstanceState
from tests.api.conftest import Api, start_api
from tests.api.test_instances import create, force_state

SECRET = "s" * 40


@pytest.fixture(params=["memory", "sqlite"])
def timed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Api, FakeClock]]:
    clock = FakeClock()
    for api in start_api(
        request.param, tmp_path, clock=clock, expire_host_time=30.0, reconcile_grace=5.0
    ):
        yield api, clock


def register(api: Api, node: dict[str, str], name: str = "n1", **extra: Any) -> Any:
    body = {
        "name": name,
        "memory": 4096,
        "cores": 4,
        "version": tashi.__version__,
        "endpoint": "http://127.0.0.1:1",
        "secret": SECRET,
        **extra,
    }
    return api.call("POST", "/v1/nodes", node, json=body)


def report(instance_id: int, state: str, vm_id: int = 77) -> dict[str, Any]:
    return {
        "instanceId": instance_id,
        "vmId": vm_id,
        "state": state,
        "instance": {
            "id": instance_id,
            "name": f"vm{instance_id}",
            "userId": 1,
            "cores": 1,
            "memory": 64,
            "disks": [{"uri": "base.qcow2"}],
            "nics": [],
        },
    }


def host(api: Api, name: str = "n1") -> Any:
    return api.call("GET", f"/v1/hosts/{name}", api.admin).json()


def test_a_node_registers_its_host(timed: tuple[Api, FakeClock]) -> None:
    api, _ = timed
    node = api.user("node1", role="node")
    reply = register(api, node)
    assert reply.status_code == 200, reply.text
    assert reply.json()["hostId"] == host(api)["id"]
    got = host(api)
    assert (got["up"], got["memory"], got["cores"], got["state"]) == (True, 4096, 4, "Normal")
    assert register(api, node).json()["hostId"] == got["id"]  # again: same host


def test_only_nodes_report_and_only_about_their_host(timed: tuple[Api, FakeClock]) -> None:
    api, _ = timed
    alice = api.user("alice")
    assert register(api, alice).status_code == 403
    node1, node2 = api.user("node1", role="node"), api.user("node2", role="node")
    hid = register(api, node1).json()["hostId"]
    assert register(api, node2).status_code == 403  # the host is bound to node1
    reply = api.call("POST", f"/v1/nodes/{hid}/heartbeat", node2, json={"vms": []})
    assert reply.status_code == 404
    assert register(api, node1, endpoint="ftp://x").status_code == 400
    assert register(api, node1, secret="short").status_code == 400


def test_a_version_mismatch_is_marked_and_cleared(timed: tuple[Api, FakeClock]) -> None:
    api, _ = timed
    node = api.user("node1", role="node")
    assert register(api, node, version="0.0.0-old").json()["state"] == "VersionMismatch"
    assert register(api, node).json()["state"] == "Normal"


def test_heartbeats_reconcile_instances(timed: tuple[Api, FakeClock]) -> None:
    api, clock = timed
    node = api.user("node1", role="node")
    hid = register(api, node).json()["hostId"]
    a = create(api, api.admin, "a").json()["id"]
    b = create(api, api.admin, "b").json()["id"]
    force_state(api, a, InstanceState.Activating, host=hid)
    force_state(api, b, InstanceState.Activating, host=hid)
    beat = {"vms": [report(a, "running", 4242)]}
    api.call("POST", f"/v1/nodes/{hid}/heartbeat", node, json=beat)
    assert api.call("GET", f"/v1/instances/{a}", api.admin).json()["state"] == "Activating"
    clock.advance(10)  # past the grace
    assert api.call("POST", f"/v1/nodes/{hid}/heartbeat", node, json=beat).status_code == 200
    got_a = api.call("GET", f"/v1/instances/{a}", api.admin).json()
    got_b = api.call("GET", f"/v1/instances/{b}", api.admin).json()
    assert (got_a["state"], got_a["vmId"]) == ("Running", 4242)
    assert (got_b["state"], got_b["hostId"]) == ("Held", None)
    assert "did not start" in got_b["reason"]


def test_events_finish_operations(timed: tuple[Api, FakeClock]) -> None:
    api, clock = timed
    node = api.user("node1", role="node")
    hid = register(api, node).json()["hostId"]
    a = create(api, api.admin, "a").json()["id"]
    b = create(api, api.admin, "b").json()["id"]
    for iid in (a, b):
        force_state(api, iid, InstanceState.Activating, host=hid)
        force_state(api, iid, InstanceState.Running)
    force_state(api, b, InstanceState.Suspending)
    at = clock.now().isoformat()
    events = {
        "events": [
            {"instanceId": a, "kind": "exited", "detail": "guest powered off", "at": at},
            {"instanceId": b, "kind": "suspended", "detail": "2_b.gz", "at": at},
        ]
    }
    reply = api.call("POST", f"/v1/nodes/{hid}/events", node, json=events)
    assert reply.json() == {"accepted": 2}
    assert api.call("GET", f"/v1/instances/{a}", api.admin).status_code == 404
    history = api.call("GET", f"/v1/instances/{a}/history", api.admin).json()
    assert [e["kind"] for e in history] == ["exited", "exited"]  # the node's word, then ours
    assert "guest powered off" in history[0]["message"]
    assert "Running -> Exited" in history[1]["message"]
    got_b = api.call("GET", f"/v1/instances/{b}", api.admin).json()
    assert (got_b["state"], got_b["hostId"]) == ("Suspended", None)


def test_a_silent_host_goes_down_and_orphans_its_instances(timed: tuple[Api, FakeClock]) -> None:
    api, clock = timed
    node = api.user("node1", role="node")
    hid = register(api, node).json()["hostId"]
    a = create(api, api.admin, "a").json()["id"]
    force_state(api, a, InstanceState.Activating, host=hid)
    force_state(api, a, InstanceState.Running)
    check = api.service.liveness.check
    assert api.http.portal.call(check) == []  # type: ignore[union-attr]
    clock.advance(31)
    down = api.http.portal.call(check)  # type: ignore[union-attr]
    assert [h.name for h in down] == ["n1"]
    assert host(api)["up"] is False
    assert api.call("GET", f"/v1/instances/{a}", api.admin).json()["state"] == "Orphaned"
    # The node comes back and still runs the VM: it is re-attached.
    register(api, node, vms=[report(a, "running")])
    clock.advance(10)
    api.call("POST", f"/v1/nodes/{hid}/heartbeat", node, json={"vms": [report(a, "running")]})
    assert api.call("GET", f"/v1/instances/{a}", api.admin).json()["state"] == "Running"
    assert host(api)["up"] is True


def test_a_vm_running_twice_is_fenced(timed: tuple[Api, FakeClock]) -> None:
    api, clock = timed
    n1, n2 = api.user("node1", role="node"), api.user("node2", role="node")
    h1 = register(api, n1, name="n1").json()["hostId"]
    h2 = register(api, n2, name="n2").json()["hostId"]
    a = create(api, api.admin, "a").json()["id"]
    force_state(api, a, InstanceState.Activating, host=h1)
    force_state(api, a, InstanceState.Running)
    clock.advance(10)
    api.call("POST", f"/v1/nodes/{h2}/heartbeat", n2, json={"vms": [report(a, "running")]})
    kinds = [e["kind"] for e in api.call("GET", f"/v1/instances/{a}/history", api.admin).json()]
    assert kinds == ["fenced"]
    got = api.call("GET", f"/v1/instances/{a}", api.admin).json()
    assert (got["state"], got["hostId"]) == ("Running", h1)  # the record is untouched


def test_a_vm_the_store_lost_is_adopted(timed: tuple[Api, FakeClock]) -> None:
    api, _ = timed
    n1 = api.user("node1", role="node")
    h1 = register(api, n1).json()["hostId"]
    api.call("POST", f"/v1/nodes/{h1}/heartbeat", n1, json={"vms": [report(999, "running", 31)]})
    got = api.call("GET", "/v1/instances/999", api.admin).json()
    assert (got["name"], got["state"], got["hostId"], got["vmId"]) == ("vm999", "Running", h1, 31)
    kinds = [e["kind"] for e in api.call("GET", "/v1/instances/999/history", api.admin).json()]
    assert kinds == ["adopted"]
    created = create(api, api.admin, "fresh").json()["id"]
    assert created > 999  # ids stay above an adopted one
    # Reported again: it is known now, nothing more happens.
    api.call("POST", f"/v1/nodes/{h1}/heartbeat", n1, json={"vms": [report(999, "running", 31)]})
    kinds = [e["kind"] for e in api.call("GET", "/v1/instances/999/history", api.admin).json()]
    assert kinds == ["adopted"]
