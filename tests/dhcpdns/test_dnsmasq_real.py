"""A real dnsmasq (``DnsmasqServer``) in a network namespace, fed by the dnsmasq backend: a real
DHCP client (busybox udhcpc, as the tiny guest runs it) in a second namespace gets its static
lease and host name; DNS (dnspython, from the client's namespace) answers the A and the PTR
record; after ``withdraw`` the name is gone; ``stop`` leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tashi.config.network import DhcpDnsSettings
from tashi.dhcpdns.backends.base import HostEntry
from tashi.dhcpdns.backends.dnsmasq import DnsmasqBackend, DnsmasqServer
from tashi.domain.ids import InstanceId, NetworkId
from tests.fixtures.netns import namespaces

pytestmark = pytest.mark.anyio

N7 = NetworkId(7)
SERVER, GUEST = "198.19.7.1", "198.19.7.23"
MAC = "52:54:00:07:00:23"
QUERY = """
import sys, dns.exception, dns.message, dns.query, dns.rcode, dns.rdatatype, dns.reversename
server, kind, name = sys.argv[1:4]
if kind == "PTR":
    name = dns.reversename.from_address(name).to_text()
try:
    reply = dns.query.udp(dns.message.make_query(name, kind), server, timeout=3)
except dns.exception.Timeout:
    print("TIMEOUT")
    sys.exit(0)
rdtype = dns.rdatatype.from_text(kind)
answers = sorted(r.to_text() for rrset in reply.answer if rrset.rdtype == rdtype for r in rrset)
print(" ".join(answers) or dns.rcode.to_text(reply.rcode()))
"""


def wire(server_ns: str, guest_ns: str) -> None:
    """``dns0`` (198.19.7.1/24) in the server namespace, its veth peer ``eth0`` (MAC, no
    address) in the guest's, both up, and both namespaces' loopback."""
    with IPRoute(netns=server_ns, flags=0) as ipr:
        ipr.link("add", ifname="dns0", kind="veth", peer="eth0")
        (index,) = ipr.link_lookup(ifname="dns0")
        ipr.addr("add", index=index, address=SERVER, prefixlen=24)
        ipr.link("set", index=index, state="up")
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")  # dhcp_release reaches dnsmasq through it
        (peer,) = ipr.link_lookup(ifname="eth0")
        ipr.link("set", index=peer, net_ns_fd=guest_ns)
    with IPRoute(netns=guest_ns, flags=0) as ipr:
        (index,) = ipr.link_lookup(ifname="eth0")
        ipr.link("set", index=index, address=MAC, state="up")
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")


def in_ns(netns: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout
    )


def dns(netns: str, kind: str, name: str) -> str:
    out = in_ns(netns, sys.executable, "-c", QUERY, SERVER, kind, name)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def wait_for_gone(netns: str, kind: str, name: str, timeout: float = 15) -> None:
    """dnsmasq reloads on SIGHUP asynchronously: ask until the record is gone. (While the
    guest's old lease lives, dnsmasq 2.90 leaves a withdrawn name unanswered rather than
    answering NXDOMAIN; either way the address is not handed out.)"""
    deadline = time.monotonic() + timeout
    answer = dns(netns, kind, name)
    while answer not in ("NXDOMAIN", "TIMEOUT") and time.monotonic() < deadline:
        answer = dns(netns, kind, name)
    assert answer in ("NXDOMAIN", "TIMEOUT")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[list[str], DnsmasqBackend, DnsmasqServer]]:
    if os.geteuid() != 0:
        raise AssertionError("needs root (network namespaces, dnsmasq on port 53 and 67)")
    settings = DhcpDnsSettings(dnsmasq_dir=tmp_path / "dnsmasq", dns_domain="tashi.test")
    with namespaces(2) as names:
        await asyncio.to_thread(wire, *names)
        server = DnsmasqServer(
            settings, N7, interface="dns0", subnet="198.19.7.0/24", netns=names[0]
        )
        await server.start()
        pid = server.pid
        assert pid is not None
        try:
            yield names, DnsmasqBackend(settings), server
        finally:
            await server.stop()
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
            assert not server.pid_file.exists()


async def test_a_guest_gets_its_static_lease_and_name_and_dns_answers(
    served: tuple[list[str], DnsmasqBackend, DnsmasqServer], tmp_path: Path
) -> None:
    (_, guest_ns), backend, server = served
    entry = HostEntry(InstanceId(23), 0, N7, MAC, GUEST, "web", "web.tashi.test")
    await backend.publish([entry])
    assert await backend.entries() == [entry]

    script = tmp_path / "udhcpc.script"
    seen = tmp_path / "lease"
    script.write_text(
        f'#!/bin/busybox sh\n[ "$1" = bound ] && echo "$ip $hostname $domain" > {seen}\nexit 0\n'
    )
    script.chmod(0o755)
    out = await asyncio.to_thread(
        in_ns, guest_ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "2",
        "-s", str(script),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert seen.read_text().split() == [GUEST, "web", "tashi.test"]

    # The guest's script above did not configure eth0; give it the leased address to ask DNS.
    added = await asyncio.to_thread(
        in_ns, guest_ns, "ip", "addr", "add", f"{GUEST}/24", "dev", "eth0"
    )
    assert added.returncode == 0, added.stderr
    assert await asyncio.to_thread(dns, guest_ns, "A", "web.tashi.test") == GUEST
    assert await asyncio.to_thread(dns, guest_ns, "PTR", GUEST) == "web.tashi.test."

    # Reloads after the lease was taken: dnsmasq must live through them and answer (2.90
    # segfaulted at exactly this point when host lines carried set: tags).
    other = HostEntry(InstanceId(24), 0, N7, "52:54:00:07:00:24", "198.19.7.24", "db", "db.t")
    for _ in range(3):
        await backend.publish([other])
        await backend.withdraw(InstanceId(24))
    await backend.publish([other])
    assert await asyncio.to_thread(dns, guest_ns, "A", "db.t") == "198.19.7.24"
    assert server.pid is not None
    os.kill(server.pid, 0)  # still the same process: raises ProcessLookupError if it died

    await backend.withdraw(InstanceId(23))
    await asyncio.to_thread(wait_for_gone, guest_ns, "A", "web.tashi.test")
    assert await backend.entries() == [other]
    assert (
        tmp_path / "dnsmasq" / "dhcp-hosts.7"
    ).read_text() == "52:54:00:07:00:24,198.19.7.24,db\n"


async def test_replace_all_rewrites_every_network_it_knows(
    served: tuple[list[str], DnsmasqBackend, DnsmasqServer], tmp_path: Path
) -> None:
    (_, guest_ns), backend, _ = served
    old = HostEntry(
        InstanceId(1), 0, N7, "52:54:00:07:00:01", "198.19.7.10", "old", "old.tashi.test"
    )
    await backend.publish([old])
    # A restarted hook: a new backend object, and the cluster's truth.
    again = DnsmasqBackend(backend.settings)
    new = HostEntry(InstanceId(2), 0, N7, MAC, GUEST, "new", "new.tashi.test")
    await again.replace_all([new])
    added = await asyncio.to_thread(
        in_ns, guest_ns, "ip", "addr", "add", f"{GUEST}/24", "dev", "eth0"
    )
    assert added.returncode == 0, added.stderr
    await asyncio.to_thread(wait_for_gone, guest_ns, "A", "old.tashi.test")
    assert await asyncio.to_thread(dns, guest_ns, "A", "new.tashi.test") == GUEST
    lines = (tmp_path / "dnsmasq" / "dhcp-hosts.7").read_text().splitlines()
    assert lines == [f"{MAC},{GUEST},new"]


def lease_macs(tmp_path: Path) -> list[str]:
    path = tmp_path / "dnsmasq" / "leases.7"
    return [line.split()[1] for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_restarted_hook_ends_the_lease_of_a_nic_destroyed_meanwhile(
    served: tuple[list[str], DnsmasqBackend, DnsmasqServer], tmp_path: Path
) -> None:
    """The instance was destroyed while the scheduler (and its hook) was down: the new backend
    never knew its entry, yet its lease must end, not live on in dnsmasq (with its DNS name)
    until the lease time runs out. Found by the fault-injection suite (issue 14.6)."""
    (_, guest_ns), backend, _ = served
    await backend.publish([HostEntry(InstanceId(23), 0, N7, MAC, GUEST, "web", "web.tashi.test")])
    out = await asyncio.to_thread(
        in_ns, guest_ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "2",
        "-s", "/bin/true",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    deadline = time.monotonic() + 10
    while lease_macs(tmp_path) != [MAC] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # dnsmasq writes its lease file after the ACK
    assert lease_macs(tmp_path) == [MAC]
    await DnsmasqBackend(backend.settings).replace_all([])  # the restarted hook: no instance
    deadline = time.monotonic() + 10
    while lease_macs(tmp_path) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert lease_macs(tmp_path) == []
