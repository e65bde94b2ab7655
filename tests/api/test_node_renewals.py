"""Heartbeats that say nothing new are renewals (ADR 0023), through the real HTTP app: they are
written and answered like any other, and whatever changed in the store since the host's last
full report (a user's request, the host marked down, a witness gone) makes the next identical
report go the whole way again. Also the races of a host lost and back (the transfer-crash
finding): a host marked down while its report is in flight keeps or restarts its instances,
and never loses one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tashi.clustermanager.events import FirewallReported
from tashi.domain.clock import FakeClock
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import Host
from tashi.domain.nodes import Heartbeat, VmReport
from tashi.domain.states import InstanceState
from tests.api.conftest import Api, start_api
from tests.api.test_instances import create, force_state
from tests.api.test_nodes import register, report

S = InstanceState
LEASE, EXPIRE, GRACE = 10.0, 6.0, 2.0


@pytest.fixture(params=["memory", "sqlite"])
def leased(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Api, FakeClock]]:
    clock = FakeClock()
    options = {"expire_host_time": EXPIRE, "reconcile_grace": GRACE}
    for api in start_api(request.param, tmp_path, clock=clock, host_lease_time=LEASE, **options):
        yield api, clock


def beat(api: Api, node: dict[str, str], host_id: int, **body: Any) -> Any:
    reply = api.call("POST", f"/v1/nodes/{host_id}/heartbeat", node, json={"vms": [], **body})
    assert reply.status_code == 200, reply.text
    return reply.json()


def stored(api: Api, host_id: int) -> Host:
    return api.http.portal.call(api.service.db.read, lambda tx: tx.hosts.get(HostId(host_id)))  # type: ignore[union-attr, no-any-return]


def state(api: Api, name: str) -> str:
    reply = api.call("GET", f"/v1/instances/{name}", api.admin)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["state"])


def renewed(api: Api) -> int:
    return api.service.renewals.renewed


def running_host(api: Api, clock: FakeClock) -> tuple[dict[str, str], int, int]:
    """A node n1 registered, running the instance ``web``, its report settled."""
    node = api.user("node1", role="node")
    register(api, node)
    hid = api.call("GET", "/v1/hosts/n1", api.admin).json()["id"]
    web = create(api, api.user("alice"), "web").json()["id"]
    force_state(api, web, S.Running, host=hid)
    clock.advance(GRACE + 1)
    beat(api, node, hid, vms=[report(web, "running")])  # the whole way: settled
    return node, hid, web


def test_a_report_with_nothing_new_is_a_renewal_that_is_written_and_grants_the_lease(
    leased: tuple[Api, FakeClock],
) -> None:
    api, clock = leased
    node, hid, web = running_host(api, clock)
    before = renewed(api)
    clock.advance(3)
    reply = beat(api, node, hid, vms=[report(web, "running")], load=1.5)
    assert renewed(api) == before + 1  # a renewal, not the whole way
    assert (reply["up"], reply["leaseTime"], reply["state"]) == (True, LEASE, "Normal")
    host = stored(api, hid)
    assert host.last_heartbeat == clock.now() and host.load == 1.5
    assert host.lease_expires == clock.now() + timedelta(seconds=LEASE)
    assert state(api, "web") == "Running"
    metrics = api.http.get("/metrics").text
    assert 'tashi_heartbeats_total{way="renewal"} 1' in metrics
    assert "tashi_heartbeat_renewal_writes_total 1" in metrics
    clock.advance(3)  # a new VM state: the whole way again
    beat(api, node, hid, vms=[report(web, "paused")])
    assert renewed(api) == before + 1


def test_a_report_of_another_policy_version_goes_the_whole_way_and_is_told(
    leased: tuple[Api, FakeClock],
) -> None:
    """The security-group policy's version a node reports is part of what a renewal compares
    (the fast lane's key too): a changed one goes the whole way, and the firewall sync hears
    of it (``FirewallReported``); the same one again is a renewal and tells nothing."""
    api, clock = leased
    node, hid, web = running_host(api, clock)
    told: list[FirewallReported] = []

    async def record(event: FirewallReported) -> None:
        told.append(event)

    api.service.events.subscribe(FirewallReported, record)
    vms = [report(web, "running")]
    before = renewed(api)
    for version in ("a" * 24, "a" * 24, "b" * 24, "b" * 24):
        clock.advance(3)
        beat(api, node, hid, vms=vms, firewall=version)
    assert renewed(api) == before + 2  # the second of each
    assert told == [FirewallReported(HostId(hid), v) for v in ("a" * 24, "b" * 24)]


def test_a_users_request_since_the_last_report_is_reconciled_by_an_identical_one(
    leased: tuple[Api, FakeClock],
) -> None:
    """The VM was paused when the report settled; the user's pause reaches the store after
    it (Running -> Pausing). The next report is the same, and still settles the pause."""
    api, clock = leased
    node, hid, web = running_host(api, clock)
    beat(api, node, hid, vms=[report(web, "paused")])
    clock.advance(GRACE + 1)
    beat(api, node, hid, vms=[report(web, "paused")])  # settled: Running, the VM paused
    force_state(api, web, S.Pausing)  # through the service's database, as the verb writes
    clock.advance(GRACE + 1)
    before = renewed(api)
    beat(api, node, hid, vms=[report(web, "paused")])
    assert renewed(api) == before  # the whole way
    assert state(api, "web") == "Paused"


def test_a_host_marked_down_gets_its_instances_back_from_the_same_report(
    leased: tuple[Api, FakeClock],
) -> None:
    api, clock = leased
    node, hid, web = running_host(api, clock)
    clock.advance(EXPIRE + 1)
    down = api.http.portal.call(api.service.liveness.check)  # type: ignore[union-attr]
    assert [h.id for h in down] == [hid] and state(api, "web") == "Orphaned"
    beat(api, node, hid, vms=[report(web, "running")])
    assert stored(api, hid).up and state(api, "web") == "Orphaned"  # within its grace
    clock.advance(GRACE + 1)
    beat(api, node, hid, vms=[report(web, "running")])  # the same report
    assert state(api, "web") == "Running"


class MarkedDownFirst:
    """The service's database, but liveness marks the host down just before the next write
    of a report runs (after its checks, before its transaction)."""

    def __init__(self, api: Api) -> None:
        self.db = api.service.node_reports._db
        self.liveness = api.service.liveness
        self.armed = True

    async def write(self, work: Any, **kw: Any) -> Any:
        if self.armed:
            self.armed = False
            assert len(await self.liveness.check()) == 1
        return await self.db.write(work, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_a_host_marked_down_while_its_report_is_under_way_loses_no_instance(
    leased: tuple[Api, FakeClock],
) -> None:
    """The transfer-crash finding: a node manager restarted while its VM was being suspended,
    and reports without the VM; liveness marks the host down while that report is under way.
    The instance is restarted elsewhere from its image (HA), never removed."""
    api, clock = leased
    node, hid, web = running_host(api, clock)
    force_state(api, web, S.Suspending)
    clock.advance(EXPIRE + 1)
    reports = api.service.node_reports
    reports._db = MarkedDownFirst(api)  # type: ignore[assignment]
    try:
        beat(api, node, hid)
    finally:
        reports._db = reports._db.db  # type: ignore[attr-defined]
    for _ in range(3):  # more reports without the VM, past the grace each time
        clock.advance(GRACE + 1)
        beat(api, node, hid)
    assert state(api, "web") == "Pending"
    history = api.call("GET", "/v1/instances/web/history", api.admin).json()
    assert [e["kind"] for e in history][-2:] == ["hostLost", "rescheduled"]


def test_liveness_leaves_up_a_host_that_reported_while_it_was_checked(
    leased: tuple[Api, FakeClock],
) -> None:
    """Checking a silent host's node manager takes time; the node manager restarts and
    reports meanwhile. The check's verdict is then stale: the host stays up, and nothing of
    it is orphaned."""
    api, clock = leased
    node, hid, web = running_host(api, clock)
    clock.advance(EXPIRE + 1)
    nodes = api.service.liveness._nodes  # the gateway the check asks
    principal = api.http.portal.call(  # type: ignore[union-attr]
        api.service.auth.authenticate, node["Authorization"].removeprefix("Bearer ")
    )
    inst = api.http.portal.call(  # type: ignore[union-attr]
        api.service.db.read, lambda tx: tx.instances.get(InstanceId(web))
    )

    class Restarted:
        async def alive(self, host: Host) -> bool:
            # the new node manager's report lands first; the old one did not answer
            report = Heartbeat(vms=(VmReport(inst, 77, "running"),), load=0.5)
            await api.service.node_reports.heartbeat(principal, hid, report)
            return False

    api.service.liveness._nodes = Restarted()  # type: ignore[assignment]
    try:
        down = api.http.portal.call(api.service.liveness.check)  # type: ignore[union-attr]
    finally:
        api.service.liveness._nodes = nodes
    assert down == [] and stored(api, hid).up and state(api, "web") == "Running"
    assert stored(api, hid).load == 0.5


def test_a_hosts_report_goes_the_whole_way_when_its_witness_goes_down(
    leased: tuple[Api, FakeClock],
) -> None:
    api, clock = leased
    nodes = [api.user(f"node{i}", role="node") for i in (1, 2, 3, 4)]
    for i, node in enumerate(nodes):
        secret = f"peer-secret-{i}".ljust(32, "x")
        assert register(api, node, name=f"n{i + 1}", peerSecret=secret).status_code == 200
    ids = [api.call("GET", f"/v1/hosts/n{i}", api.admin).json()["id"] for i in (1, 2, 3, 4)]
    epochs = {}
    for i in (0, 1, 2, 3):  # everybody acknowledges and settles
        epochs[i] = beat(api, nodes[i], ids[i])["witnesses"]["epoch"]
        beat(api, nodes[i], ids[i], witnessEpoch=epochs[i])
    first = beat(api, nodes[0], ids[0], witnessEpoch=epochs[0])["witnesses"]
    assert [w["hostId"] for w in first["hosts"]] == ids[1:3]
    clock.advance(EXPIRE + 1)
    before = renewed(api)
    for i in (0, 2, 3):  # n2 falls silent, the others renew
        assert beat(api, nodes[i], ids[i], witnessEpoch=epochs[i])["witnesses"]["epoch"]
    assert renewed(api) == before + 3
    api.http.portal.call(api.service.liveness.check)  # type: ignore[union-attr]
    assert not stored(api, ids[1]).up
    after = beat(api, nodes[0], ids[0], witnessEpoch=epochs[0])["witnesses"]
    assert renewed(api) == before + 3  # the whole way: its witness went
    assert [w["hostId"] for w in after["hosts"]] == [ids[2], ids[3]]
    assert after["epoch"] > first["epoch"]


def test_what_the_fast_lane_does_not_renew_the_route_answers_with_its_own_errors(
    leased: tuple[Api, FakeClock],
) -> None:
    api, clock = leased
    node, hid, web = running_host(api, clock)
    body = {"vms": [report(web, "running")]}
    url = f"/v1/nodes/{hid}/heartbeat"
    bad = api.call("POST", url, {"Authorization": "Bearer nonsense"}, json=body)
    assert bad.status_code == 401 and "expired" in bad.json()["error"]["message"]
    other = api.user("node2", role="node")
    assert api.call("POST", url, other, json=body).status_code == 404  # not its host
    shapeless = api.call("POST", url, node, json={"vms": [{"instanceId": "x"}]})
    assert shapeless.status_code == 400
    before = renewed(api)
    good = api.call("POST", url, node, json=body)
    assert good.status_code == 200 and renewed(api) == before + 1
    assert set(good.json()) == {"hostId", "state", "up", "leaseTime", "peers", "witnesses"}
    assert good.headers["x-request-id"]
