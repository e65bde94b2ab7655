"""A real tiny guest (QEMU, TCG) gets its static lease and its host name from our dnsmasq.

In a network namespace: the ``bridge`` network driver makes network 9's bridge and the VM's tap
on it (as a node manager does), the bridge gets 198.19.9.1/24, ``DnsmasqServer`` serves the
network, the dnsmasq backend publishes the VM's entry (as the DhcpDns hook does). The guest's
udhcpc hook sets the host name from NIC 0's lease (option 12) and each ``TASHI-GUEST-DHCP``
marker prints the name its lease gave (the second NIC's is ``web-nic1``); DNS answers its name,
and it answers ping. Everything it made is removed (checked).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tashi.config.network import BridgeSettings, DhcpDnsSettings
from tashi.dhcpdns.backends.base import HostEntry
from tashi.dhcpdns.backends.dnsmasq import DnsmasqBackend, DnsmasqServer
from tashi.domain.ids import InstanceId, NetworkId
from tashi.images import markers
from tashi.network.bridge import BridgeDriver
from tests.dhcpdns.test_dnsmasq_real import QUERY, in_ns, namespaces
from tests.images.guests import Nic, require_programs, running

pytestmark = pytest.mark.anyio

N9 = NetworkId(9)
SERVER, GUEST, GUEST1 = "198.19.9.1", "198.19.9.42", "198.19.9.43"
MAC, MAC1 = "52:54:00:09:00:2a", "52:54:00:09:00:2b"


def ask(netns: str, kind: str, name: str) -> str:
    out = in_ns(netns, sys.executable, "-c", QUERY, SERVER, kind, name)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def test_a_tiny_guest_gets_its_static_lease_and_host_name(
    tiny_image: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        raise AssertionError("needs root (a network namespace, taps, dnsmasq)")
    require_programs("qemu-system-x86_64", "qemu-img", "dnsmasq", "busybox")
    settings = DhcpDnsSettings(dnsmasq_dir=tmp_path / "dnsmasq", dns_domain="tashi.test")
    with namespaces(1) as (netns,):
        network = BridgeDriver(BridgeSettings(create_bridges=True, ifup_dir=tmp_path), netns=netns)
        server: DnsmasqServer | None = None
        try:
            spec = await network.attach(InstanceId(42), 0, N9, MAC)
            spec1 = await network.attach(InstanceId(42), 1, N9, MAC1)
            bridge = network.bridge_name(N9)
            for argv in (
                ["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", f"{SERVER}/24", "dev", bridge],
                ["ip", "link", "set", bridge, "up"],
            ):
                done = await asyncio.to_thread(in_ns, netns, *argv)
                assert done.returncode == 0, done.stderr
            server = DnsmasqServer(
                settings, N9, interface=bridge, subnet="198.19.9.0/24", netns=netns
            )
            await server.start()
            await DnsmasqBackend(settings).publish(
                [
                    HostEntry(InstanceId(42), 0, N9, MAC, GUEST, "web", "web.tashi.test"),
                    HostEntry(
                        InstanceId(42), 1, N9, MAC1, GUEST1, "web-nic1", "web-nic1.tashi.test"
                    ),
                ]
            )
            nics = [Nic(netns, spec.tap, MAC), Nic(netns, spec1.tap, MAC1)]
            with running(tiny_image, tmp_path / "guest", nics=nics) as guest:
                lease, seconds = await asyncio.to_thread(guest.wait_for, markers.DHCP, iface="eth0")
                assert (lease.ip, lease.hostname) == (GUEST, "web"), guest.tail()
                assert f"TASHI-GUEST-DHCP eth0 {GUEST} hostname=web" in guest.console()
                second, _ = await asyncio.to_thread(guest.wait_for, markers.DHCP, iface="eth1")
                assert (second.ip, second.hostname) == (GUEST1, "web-nic1")  # its lease's name
                assert await asyncio.to_thread(ask, netns, "A", "web.tashi.test") == GUEST
                assert await asyncio.to_thread(ask, netns, "PTR", GUEST) == "web.tashi.test."
                ping = await asyncio.to_thread(
                    in_ns, netns, "busybox", "ping", "-c", "1", "-W", "10", GUEST
                )
                assert ping.returncode == 0, ping.stdout + ping.stderr
                print(f"tiny guest: TASHI-GUEST-DHCP with its name {seconds:.1f} s after qemu")
        finally:
            if server is not None:
                await server.stop()
            await network.detach(InstanceId(42))
            await network.close()
        links = subprocess.run(
            ["ip", "-n", netns, "-o", "link"], capture_output=True, text=True, check=True
        )
        assert "tashi42." not in links.stdout
