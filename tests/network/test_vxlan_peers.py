"""VXLAN peers learned from the cluster manager: the node reports its underlay address, the
cluster manager answers each registration and heartbeat with the other up hosts' addresses, the
reporter hands them to the network driver, and the driver floods to them and to its static
``[Vxlan] peers`` (the cluster manager's own leg) together.

The cluster manager is the real HTTP app (memory and SQLite stores); the kernel part runs the
real driver in a namespace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tashi.config.network import BridgeSettings, VxlanSettings
from tashi.domain.clock import FakeClock
from tashi.domain.errors import BackendFailure
from tashi.domain.ids import NetworkId
from tashi.domain.nodes import Acknowledged, Heartbeat, Registration
from tashi.network.base import NetworkCapability
from tashi.network.bridge import BridgeDriver
from tashi.network.fake import FakeNetworkDriver
from tashi.network.netlink import Netlink
from tashi.network.vxlan import VxlanDriver
from tashi.nodeapi import convert
from tashi.nodeapi.schemas import HeartbeatIn, HeartbeatOut, RegisterIn, RegisterOut
from tashi.nodemanager.reporting import Reporter
from tests.api.conftest import Api, start_api
from tests.api.test_nodes import register
from tests.fixtures.netns import namespaces
from tests.fixtures.reporting import reporter as fixtures_reporter
from tests.network.conftest import UNDERLAY, underlay
from tests.network.test_vxlan import in_netns, kinds

A, B, C = "198.18.253.1", "198.18.253.2", "198.18.253.3"
CM = "198.18.253.250"


# --- the cluster manager ---------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def timed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Api, FakeClock]]:
    clock = FakeClock()
    for api in start_api(request.param, tmp_path, clock=clock, expire_host_time=30.0):
        yield api, clock


def beat(api: Api, node: dict[str, str], host_id: int, underlay: str | None) -> Any:
    body: dict[str, Any] = {"vms": []}
    if underlay is not None:
        body["underlay"] = underlay
    reply = api.call("POST", f"/v1/nodes/{host_id}/heartbeat", node, json=body)
    assert reply.status_code == 200, reply.text
    return reply.json().get("peers")


def test_the_cluster_manager_tells_each_node_the_other_up_hosts(
    timed: tuple[Api, FakeClock],
) -> None:
    api, clock = timed
    n1, n2, n3 = (api.user(f"node{i}", role="node") for i in (1, 2, 3))
    first = register(api, n1, "h1", underlay=A).json()
    assert first["peers"] == []
    h1 = first["hostId"]
    second = register(api, n2, "h2", underlay=B).json()
    assert second["peers"] == [A]
    h2 = second["hostId"]
    assert beat(api, n1, h1, A) == [B]
    # A host whose driver has no underlay (bridge) is in nobody's list and is sent none.
    third = register(api, n3, "h3").json()
    assert third.get("peers") is None
    assert beat(api, n3, third["hostId"], None) is None
    assert beat(api, n2, h2, B) == [A]
    shown = api.call("GET", "/v1/hosts/h2", api.admin).json()
    assert shown["config"] == {"underlay": B}  # getHosts shows where it was learned

    # h2 falls silent: once it is down it drops out of the others' lists.
    clock.advance(20)
    assert beat(api, n1, h1, A) == [B]
    clock.advance(11)
    down = api.http.portal.call(api.service.liveness.check)  # type: ignore[union-attr]
    assert "h2" in [h.name for h in down]
    assert beat(api, n1, h1, A) == []
    # It comes back (a new node manager) with another address: the new one is handed out.
    assert register(api, n2, "h2", underlay=C).json()["peers"] == [A]
    assert beat(api, n1, h1, A) == [C]
    assert api.call("GET", "/v1/hosts/h2", api.admin).json()["config"] == {"underlay": C}


def test_an_admins_host_config_survives_the_underlay(timed: tuple[Api, FakeClock]) -> None:
    api, _ = timed
    node = api.user("node1", role="node")
    hid = register(api, node, "h1", underlay=A).json()["hostId"]
    reply = api.call("PATCH", "/v1/hosts/h1/config", api.admin, json={"config": {"rack": "r2"}})
    assert reply.status_code == 200, reply.text
    assert beat(api, node, hid, B) == []
    config = api.call("GET", "/v1/hosts/h1", api.admin).json()["config"]
    assert config == {"rack": "r2", "underlay": B}


# --- the node manager's reporter -------------------------------------------------------------


@dataclass
class Cm:
    """The cluster manager's node client as the reporter sees it; it keeps what it was sent,
    and answers, as they travel (``nodeapi.convert``)."""

    peers: list[str] | None
    sent: list[RegisterIn | HeartbeatIn] = field(default_factory=list)

    async def register(self, request: Registration) -> Acknowledged:
        self.sent.append(convert.registration_wire(request))
        return convert.acknowledged(
            RegisterOut(
                hostId=1, state="Normal", heartbeatInterval=2, expireHostTime=6, peers=self.peers
            )
        )

    async def heartbeat(self, host_id: int, report: Heartbeat) -> Acknowledged:
        self.sent.append(convert.heartbeat_wire(report))
        return convert.acknowledged(
            HeartbeatOut(hostId=1, state="Normal", up=True, peers=self.peers)
        )


def reporter(cm: Cm, network: FakeNetworkDriver | None, state_dir: Path) -> Reporter:
    return fixtures_reporter(cm, state_dir, endpoint="http://198.18.253.1:9883", network=network)


@pytest.mark.anyio
async def test_the_reporter_reports_its_underlay_and_hands_the_peers_to_the_driver(
    tmp_path: Path,
) -> None:
    cm = Cm(peers=[B])
    network = FakeNetworkDriver(underlay=A)
    assert NetworkCapability.learns_peers in network.capabilities
    rep = reporter(cm, network, tmp_path)
    await rep.heartbeat()  # registers first
    assert cm.sent[-1].underlay == A and network.peers == [B]
    cm.peers = [B, C]
    await rep.heartbeat()
    assert isinstance(cm.sent[-1], HeartbeatIn) and cm.sent[-1].underlay == A
    assert network.peers == [B, C]
    cm.peers = None  # a cluster manager that says nothing: the driver keeps what it had
    await rep.heartbeat()
    assert network.peers == [B, C]
    assert [c for c in network.calls if c[0] == "set_peers"] == [
        ("set_peers", [B]),
        ("set_peers", [B, C]),
    ]


@pytest.mark.anyio
async def test_without_a_peer_learning_driver_nothing_is_reported(tmp_path: Path) -> None:
    cm = Cm(peers=[B])
    plain = FakeNetworkDriver()
    await reporter(cm, plain, tmp_path).heartbeat()
    await reporter(cm, None, tmp_path).heartbeat()
    assert [s.underlay for s in cm.sent] == [None, None]
    assert plain.peers is None and not [c for c in plain.calls if c[0] == "set_peers"]
    bridge = BridgeDriver(BridgeSettings())
    try:
        assert await bridge.underlay_address() is None
        await bridge.set_peers([A])  # a no-op
    finally:
        await bridge.close()


@pytest.mark.anyio
async def test_a_driver_that_refuses_the_peers_does_not_stop_the_heartbeat(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    class Refusing(FakeNetworkDriver):
        async def set_peers(self, peers: Any) -> None:
            raise BackendFailure("the kernel said no")

    cm = Cm(peers=[B])
    rep = reporter(cm, Refusing(underlay=A), tmp_path)
    with caplog.at_level(logging.WARNING):
        await rep.heartbeat()
        await rep.heartbeat()
    assert rep.host_id == 1 and len(cm.sent) == 2
    assert "the kernel said no" in caplog.text


# --- the kernel: static and learned peers together -------------------------------------------


@pytest.mark.anyio
async def test_static_and_learned_peers_are_flooded_to_together() -> None:
    with namespaces(2) as (host, other):
        await asyncio.to_thread(underlay, host, A, peer_netns=other, peer_address=B)
        settings = VxlanSettings(underlay_device=UNDERLAY, peers=CM)
        driver = VxlanDriver(settings, netns=host)
        try:
            assert await driver.underlay_address() == A
            await driver.ensure_network(NetworkId(42))

            def flood(nl: Netlink) -> set[str]:
                return nl.flood_peers("vxlan42")

            assert await asyncio.to_thread(in_netns, host, flood) == {CM}
            await driver.set_peers([B, C, A])  # the CM's list; its own address is dropped
            assert await asyncio.to_thread(in_netns, host, flood) == {CM, B, C}
            await driver.ensure_network(NetworkId(43))  # a network made later floods to all
            got = await asyncio.to_thread(in_netns, host, lambda nl: nl.flood_peers("vxlan43"))
            assert got == {CM, B, C}
            await driver.set_peers([C])  # B went down: the static CM stays
            assert await asyncio.to_thread(in_netns, host, flood) == {CM, C}
            await driver.set_peers([])
            assert await asyncio.to_thread(in_netns, host, flood) == {CM}
        finally:
            await driver.close()
        assert await asyncio.to_thread(kinds, host) == {}


@pytest.mark.anyio
async def test_an_underlay_without_an_address_is_reported_as_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with namespaces(1) as (host,):
        driver = VxlanDriver(VxlanSettings(underlay_device="eth9"), netns=host)
        try:
            with caplog.at_level(logging.WARNING):
                assert await driver.underlay_address() is None
            assert "eth9 does not exist" in caplog.text
        finally:
            await driver.close()
