"""The vxlan driver in the kernel: two "hosts" (namespaces) joined by a veth underlay on
198.18.253.0/24, a vxlan driver in each, a "VM" (a namespace with a veth end on the network's
bridge, 198.19.42.0/24) behind each; the VMs ping each other over VXLAN, and when the VMs go every
bridge and VXLAN device goes too.

The "VMs" are veth ends rather than QEMU guests (``tests/dhcpdns`` boots real ones); the driver's
own taps are made beside them, so that it is the driver's tap bookkeeping that decides when a
network is removed.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest
from pyroute2 import IPRoute

from tashi.config.network import VxlanSettings
from tashi.domain.errors import InvalidInput, Unavailable
from tashi.domain.ids import InstanceId, NetworkId
from tashi.network.netlink import Netlink
from tashi.network.vxlan import VxlanDriver, parse_peers
from tests.fixtures.netns import namespaces
from tests.network.conftest import UNDERLAY, underlay

pytestmark = pytest.mark.anyio
T = TypeVar("T")

N42 = NetworkId(42)
HOST_A, HOST_B = "198.18.253.1", "198.18.253.2"
VM_A, VM_B = "198.19.42.1", "198.19.42.2"


def vm_behind(host: str, bridge: str, vm: str, address: str) -> None:
    """A "VM": namespace ``vm`` whose ``eth0`` (``address``/24) is a veth with its other end on
    ``bridge`` in ``host``."""
    port = f"vm{secrets.token_hex(3)}"
    with IPRoute(netns=host, flags=0) as ipr:
        ipr.link("add", ifname=port, kind="veth", peer="vmeth")
        (index,) = ipr.link_lookup(ifname=port)
        (bridge_index,) = ipr.link_lookup(ifname=bridge)
        ipr.link("set", index=index, master=bridge_index, state="up")
        (peer,) = ipr.link_lookup(ifname="vmeth")
        ipr.link("set", index=peer, net_ns_fd=vm, ifname="eth0")
    with IPRoute(netns=vm, flags=0) as ipr:
        (index,) = ipr.link_lookup(ifname="eth0")
        ipr.addr("add", index=index, address=address, prefixlen=24)
        ipr.link("set", index=index, state="up")


def in_netns(netns: str, call: Callable[..., T], *args: object) -> T:
    """``call(netlink, *args)`` with a ``Netlink`` of ``netns`` (run it on a thread: pyroute2
    wants no event loop)."""
    netlink = Netlink(netns)
    try:
        return call(netlink, *args)
    finally:
        netlink.close()


def kinds(netns: str) -> dict[str, str]:
    """The links of the kinds the driver makes, by name."""
    netlink = Netlink(netns)
    try:
        return {
            link.name: link.kind or ""
            for link in netlink.links()
            if link.kind in ("bridge", "vxlan", "tun")
        }
    finally:
        netlink.close()


def ping(netns: str, address: str) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", netns, "busybox", "ping", "-c", "2", "-W", "10", address]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[list[str], VxlanDriver, VxlanDriver]]:
    with namespaces(4) as names:
        host_a, host_b = names[:2]
        await asyncio.to_thread(underlay, host_a, HOST_A, peer_netns=host_b, peer_address=HOST_B)
        # A learns its peer later (as from a heartbeat); B has it in its settings.
        a = VxlanDriver(VxlanSettings(underlay_device=UNDERLAY), netns=host_a)
        b = VxlanDriver(VxlanSettings(underlay_device=UNDERLAY, peers=HOST_A), netns=host_b)
        try:
            yield names, a, b
        finally:
            await a.close()
            await b.close()


async def test_vms_on_two_hosts_share_one_segment_and_nothing_is_left(
    cluster: tuple[list[str], VxlanDriver, VxlanDriver],
) -> None:
    (host_a, host_b, vm_a, vm_b), a, b = cluster
    await a.attach(InstanceId(1), 0, N42, "52:54:00:00:42:01")
    await b.attach(InstanceId(2), 0, N42, "52:54:00:00:42:02")
    await a.set_peers([HOST_B, HOST_A])  # its own address is never a peer
    assert await a.local_address() == HOST_A
    assert await asyncio.to_thread(kinds, host_a) == {
        "vxbr42": "bridge",
        "vxlan42": "vxlan",
        "tashi1.0": "tun",
    }
    assert await asyncio.to_thread(kinds, host_b) == {
        "vxbr42": "bridge",
        "vxlan42": "vxlan",
        "tashi2.0": "tun",
    }

    def look(netlink: Netlink) -> None:
        assert netlink.flood_peers("vxlan42") == {HOST_B}
        vxlan, bridge = netlink.find("vxlan42"), netlink.find("vxbr42")
        assert vxlan is not None and bridge is not None
        assert vxlan.master == bridge.index and vxlan.up
        assert vxlan.mtu == bridge.mtu == 1450  # a 1500 underlay less VXLAN's 50 bytes

    await asyncio.to_thread(in_netns, host_a, look)

    await asyncio.to_thread(vm_behind, host_a, "vxbr42", vm_a, VM_A)
    await asyncio.to_thread(vm_behind, host_b, "vxbr42", vm_b, VM_B)
    result = await asyncio.to_thread(ping, vm_a, VM_B)
    assert result.returncode == 0, result.stdout + result.stderr
    result = await asyncio.to_thread(ping, vm_b, VM_A)
    assert result.returncode == 0, result.stdout + result.stderr

    # The last tap goes: so do the bridge and the VXLAN device (the "VM"'s veth stays, not ours).
    await a.detach(InstanceId(1))
    assert await asyncio.to_thread(kinds, host_a) == {}
    # A node manager dies and a new one finds instance 2 ended meanwhile.
    await b.close()
    assert "vxlan42" in await asyncio.to_thread(kinds, host_b)  # a tap still uses it
    again = VxlanDriver(VxlanSettings(underlay_device=UNDERLAY, peers=HOST_A), netns=host_b)
    try:
        assert await again.adopt([]) == []
        assert await asyncio.to_thread(kinds, host_b) == {}
    finally:
        await again.close()


async def test_learned_peers_update_every_network(
    cluster: tuple[list[str], VxlanDriver, VxlanDriver],
) -> None:
    (host_a, _, _, _), a, _ = cluster
    await a.ensure_network(N42)
    await a.ensure_network(NetworkId(43))
    await a.set_peers(["198.18.253.7", "198.18.253.8"])
    for device in ("vxlan42", "vxlan43"):
        peers = await asyncio.to_thread(in_netns, host_a, Netlink.flood_peers, device)
        assert peers == {"198.18.253.7", "198.18.253.8"}
    await a.set_peers(["198.18.253.8"])
    peers = await asyncio.to_thread(in_netns, host_a, lambda nl: nl.flood_peers("vxlan42"))
    assert peers == {"198.18.253.8"}
    await a.close()  # no tap on either network: both go
    assert await asyncio.to_thread(kinds, host_a) == {}


async def test_a_host_without_its_underlay_says_what_to_set() -> None:
    with namespaces(1) as (host,):
        driver = VxlanDriver(VxlanSettings(), netns=host)
        try:
            with pytest.raises(Unavailable, match="localAddress or underlayDevice"):
                await driver.ensure_network(N42)
        finally:
            await driver.close()
        driver = VxlanDriver(VxlanSettings(underlay_device="eth9"), netns=host)
        try:
            with pytest.raises(Unavailable, match="eth9 does not exist"):
                await driver.attach(InstanceId(1), 0, N42, "52:54:00:00:42:01")
        finally:
            await driver.close()
        assert await asyncio.to_thread(kinds, host) == {}


def test_settings_are_checked() -> None:
    assert parse_peers(" 198.18.0.1, 198.18.0.2 198.18.0.1 ") == {"198.18.0.1", "198.18.0.2"}
    with pytest.raises(InvalidInput, match="unicast"):
        parse_peers("239.1.1.1")
    with pytest.raises(InvalidInput, match="IPv4"):
        parse_peers("host-b")
    with pytest.raises(InvalidInput, match="bridgePrefix"):
        VxlanDriver(VxlanSettings(bridge_prefix="toolongprefix"))
    with pytest.raises(InvalidInput, match="differ"):
        VxlanDriver(VxlanSettings(bridge_prefix="vx", vxlan_prefix="vx"))
