"""What the API reports after a restart is never a guess (issue 26): until an instance's host
has reported to the cluster manager that has just started, the instance is ``confirmed: false``
with the time of the host's last report, and so is the host; its next heartbeat confirms both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from starlette.testclient import TestClient

from tashi.clustermanager.service import build_service
from tashi.domain.clock import FakeClock
from tashi.domain.states import InstanceState
from tashi.frontends.rest.app import create_app
from tashi.web.limits import HttpLimits
from tests.api.conftest import Api, make_store, start_api
from tests.api.test_instances import create, force_state
from tests.api.test_nodes import host, register, report


def restarted(api: Api, clock: FakeClock) -> Iterator[Api]:
    """A new cluster manager over the same files (the old one closed first)."""
    settings = api.settings
    service = build_service(settings, make_store("sqlite", settings), clock=clock)
    app = create_app(service, HttpLimits.of(settings.cluster_manager_service))
    with TestClient(app) as http:
        yield Api(http, service, settings, api.admin_password)
    service.close()


def instance(api: Api, iid: int) -> dict[str, object]:
    got: dict[str, object] = api.call("GET", f"/v1/instances/{iid}", api.admin).json()
    return got


def test_a_hosts_instances_are_unconfirmed_after_a_restart_until_it_reports(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    first = start_api("sqlite", tmp_path, clock=clock)
    api = next(first)
    node = api.user("node1", role="node")
    hid = register(api, node).json()["hostId"]
    a = create(api, api.admin, "a").json()["id"]
    pending = create(api, api.admin, "p").json()["id"]
    force_state(api, a, InstanceState.Activating, host=hid)
    force_state(api, a, InstanceState.Running)
    beat = {"vms": [report(a, "running")]}
    assert api.call("POST", f"/v1/nodes/{hid}/heartbeat", node, json=beat).status_code == 200
    reported = datetime.fromisoformat(str(instance(api, a)["lastReport"]))
    assert (instance(api, a)["state"], instance(api, a)["confirmed"]) == ("Running", True)
    assert host(api)["confirmed"] is True
    first.close()  # the cluster manager stops

    clock.advance(60)
    for again in restarted(api, clock):
        got = instance(again, a)
        assert (got["state"], got["confirmed"]) == ("Running", False)
        assert datetime.fromisoformat(str(got["lastReport"])) == reported
        listed = again.call("GET", "/v1/instances", again.admin).json()
        assert {i["id"]: i["confirmed"] for i in listed} == {a: False, pending: True}
        assert host(again)["confirmed"] is False
        assert instance(again, pending)["lastReport"] is None  # on no host: Tashi's own word

        reply = again.call("POST", f"/v1/nodes/{hid}/heartbeat", node, json=beat)
        assert reply.status_code == 200, reply.text
        got = instance(again, a)
        assert (got["state"], got["confirmed"]) == ("Running", True)
        assert datetime.fromisoformat(str(got["lastReport"])) > reported
        assert host(again)["confirmed"] is True


def test_a_host_taken_for_down_is_no_longer_confirmed(tmp_path: Path) -> None:
    clock = FakeClock()
    for api in start_api("memory", tmp_path, clock=clock, expire_host_time=30.0):
        node = api.user("node1", role="node")
        hid = register(api, node).json()["hostId"]
        api.call("POST", f"/v1/nodes/{hid}/heartbeat", node, json={"vms": []})
        assert host(api)["confirmed"] is True
        clock.advance(31)
        down = api.http.portal.call(api.service.liveness.check)  # type: ignore[union-attr]
        assert [h.name for h in down] == ["n1"]
        assert (host(api)["up"], host(api)["confirmed"]) == (False, False)
