"""The DHCP/DNS backend contract (``tashi.dhcpdns.backends.base``), one suite over every backend:
the fake, and the dnsmasq backend feeding two real dnsmasq processes (networks 7 and 8) in a
network namespace, where "published" means a DNS client gets the answer from the dnsmasq.

Each backend comes with ``resolve(network, fqdn)`` (what a client of that network's service
gets for the A record: an address or ``None``) and ``reopen()`` (a new backend object over the
same service: the scheduler restarted).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tashi.config.network import DhcpDnsSettings
from tashi.dhcpdns.backends.base import DhcpDnsBackend, HostEntry
from tashi.dhcpdns.backends.dnsmasq import DnsmasqBackend, DnsmasqServer, hosts_file
from tashi.dhcpdns.backends.fake import FakeBackend
from tashi.dhcpdns.backends.registry import create_backend
from tashi.domain.errors import InvalidInput
from tashi.domain.ids import InstanceId, NetworkId
from tests.dhcpdns.test_dnsmasq_real import QUERY, in_ns, namespaces

pytestmark = pytest.mark.anyio

N7, N8 = NetworkId(7), NetworkId(8)
SERVERS = {N7: "198.19.7.1", N8: "198.19.8.1"}


def entry(instance: int, nic: int, network: NetworkId, host: int, name: str) -> HostEntry:
    return HostEntry(
        InstanceId(instance),
        nic,
        network,
        f"52:54:00:00:{network:02x}:{host:02x}",
        f"198.19.{network}.{host}",
        name,
        f"{name}.tashi.test",
    )


@dataclass
class Subject:
    backend: DhcpDnsBackend
    resolve: Callable[[NetworkId, str], Awaitable[str | None]]
    reopen: Callable[[], DhcpDnsBackend]

    async def sees(
        self, network: NetworkId, fqdn: str, ip: str | None, timeout: float = 10
    ) -> None:
        """The service answers ``ip`` for ``fqdn`` (``None``: no address), soon (a dnsmasq
        reloads on SIGHUP asynchronously)."""
        deadline = time.monotonic() + timeout
        got = await self.resolve(network, fqdn)
        while got != ip and time.monotonic() < deadline:
            got = await self.resolve(network, fqdn)
        assert got == ip, f"{fqdn} on network {network}: {got!r}, wanted {ip!r}"


def interfaces(netns: str) -> None:
    with IPRoute(netns=netns, flags=0) as ipr:
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")
        for network, address in SERVERS.items():
            name = f"dns{network}"
            ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")  # no dummy module here
            (index,) = ipr.link_lookup(ifname=name)
            ipr.addr("add", index=index, address=address, prefixlen=24)
            ipr.link("set", index=index, state="up")
            (peer,) = ipr.link_lookup(ifname=f"{name}p")
            ipr.link("set", index=peer, state="up")


def dns_a(netns: str, server: str, fqdn: str) -> str | None:
    out = in_ns(netns, sys.executable, "-c", QUERY, server, "A", fqdn)
    assert out.returncode == 0, out.stderr
    answer = out.stdout.strip()
    return None if answer in ("NXDOMAIN", "TIMEOUT", "NOERROR", "REFUSED") else answer


@pytest.fixture(params=["fake", "dnsmasq"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    if request.param == "fake":
        state: dict[tuple[InstanceId, int], HostEntry] = {}

        async def lookup(network: NetworkId, fqdn: str) -> str | None:
            found = [e.ip for e in state.values() if e.network_id == network and e.fqdn == fqdn]
            return found[0] if found else None

        yield Subject(FakeBackend(state), lookup, lambda: FakeBackend(state))
        return
    if os.geteuid() != 0:
        raise AssertionError("needs root (a network namespace, dnsmasq on ports 53 and 67)")
    settings = DhcpDnsSettings(dnsmasq_dir=tmp_path / "dnsmasq", dns_domain="tashi.test")
    with namespaces(1) as (netns,):
        await asyncio.to_thread(interfaces, netns)
        servers = [
            DnsmasqServer(settings, n, interface=f"dns{n}", subnet=f"198.19.{n}.0/24", netns=netns)
            for n in SERVERS
        ]
        try:
            for server in servers:
                await server.start()

            async def ask(network: NetworkId, fqdn: str) -> str | None:
                return await asyncio.to_thread(dns_a, netns, SERVERS[network], fqdn)

            yield Subject(DnsmasqBackend(settings), ask, lambda: DnsmasqBackend(settings))
        finally:
            for server in servers:
                await server.stop()


async def test_published_entries_are_served_on_their_network(subject: Subject) -> None:
    web0, web1 = entry(1, 0, N7, 10, "web"), entry(1, 1, N8, 10, "web-nic1")
    db = entry(2, 0, N7, 11, "db")
    await subject.backend.publish([web1, web0])
    await subject.backend.publish([db])
    assert await subject.backend.entries() == [web0, web1, db]  # ordered by key
    await subject.sees(N7, "web.tashi.test", "198.19.7.10")
    await subject.sees(N8, "web-nic1.tashi.test", "198.19.8.10")
    await subject.sees(N7, "db.tashi.test", "198.19.7.11")
    await subject.sees(N8, "web.tashi.test", None)  # each network's service its own names


async def test_publish_replaces_by_key_and_is_idempotent(subject: Subject) -> None:
    old = entry(1, 0, N7, 10, "web")
    await subject.backend.publish([old])
    await subject.backend.publish([old])
    assert await subject.backend.entries() == [old]
    new = entry(1, 0, N7, 12, "www")  # the same NIC, another address and name
    await subject.backend.publish([new])
    assert await subject.backend.entries() == [new]
    await subject.sees(N7, "www.tashi.test", "198.19.7.12")
    await subject.sees(N7, "web.tashi.test", None)
    moved = entry(1, 0, N8, 12, "www")  # even onto another network
    await subject.backend.publish([moved])
    assert await subject.backend.entries() == [moved]
    await subject.sees(N8, "www.tashi.test", "198.19.8.12")
    await subject.sees(N7, "www.tashi.test", None)


async def test_withdraw_removes_one_instance_and_tolerates_unknown_ones(subject: Subject) -> None:
    web0, web1 = entry(1, 0, N7, 10, "web"), entry(1, 1, N8, 10, "web-nic1")
    db = entry(2, 0, N7, 11, "db")
    await subject.backend.publish([web0, web1, db])
    await subject.backend.withdraw(InstanceId(1))
    await subject.backend.withdraw(InstanceId(1))  # twice
    await subject.backend.withdraw(InstanceId(99))  # never seen
    assert await subject.backend.entries() == [db]
    await subject.sees(N7, "web.tashi.test", None)
    await subject.sees(N8, "web-nic1.tashi.test", None)
    await subject.sees(N7, "db.tashi.test", "198.19.7.11")


async def test_replace_all_from_a_restarted_backend_is_the_whole_truth(subject: Subject) -> None:
    stale = [entry(1, 0, N7, 10, "gone"), entry(1, 1, N8, 10, "gone-nic1")]
    await subject.backend.publish(stale)
    await subject.backend.close()  # what was published stays published
    await subject.sees(N8, "gone-nic1.tashi.test", "198.19.8.10")
    again = subject.reopen()
    kept = [entry(2, 0, N7, 11, "kept")]
    await again.replace_all(kept)
    await again.replace_all(kept)  # idempotent
    assert await again.entries() == kept
    await subject.sees(N7, "kept.tashi.test", "198.19.7.11")
    await subject.sees(N7, "gone.tashi.test", None)
    await subject.sees(N8, "gone-nic1.tashi.test", None)  # a network with nothing left too
    await again.replace_all([])
    assert await again.entries() == []
    await subject.sees(N7, "kept.tashi.test", None)
    await again.close()


async def test_dnsmasq_files_hold_each_lease_once(tmp_path: Path) -> None:
    """No dnsmasq needed: the files after publish/replace (what a site's own dnsmasq reads)."""
    settings = DhcpDnsSettings(dnsmasq_dir=tmp_path)
    backend = DnsmasqBackend(settings)
    await backend.publish([entry(1, 0, N7, 10, "web")])
    await backend.publish([entry(1, 0, N7, 10, "web"), entry(2, 0, N7, 11, "db")])
    assert hosts_file(settings, N7).read_text().splitlines() == [
        "52:54:00:00:07:0a,198.19.7.10,web",
        "52:54:00:00:07:0b,198.19.7.11,db",
    ]
    assert (tmp_path / "addn-hosts.7").read_text().splitlines() == [
        "198.19.7.10 web.tashi.test web",
        "198.19.7.11 db.tashi.test db",
    ]


def test_backends_by_name_and_what_dnsmasq_refuses(tmp_path: Path) -> None:
    assert create_backend(DhcpDnsSettings(backend="fake")).name == "fake"
    assert create_backend(DhcpDnsSettings(dnsmasq_dir=tmp_path)).name == "dnsmasq"
    with pytest.raises(InvalidInput, match="choose one of: dnsmasq, fake"):
        create_backend(DhcpDnsSettings(backend="bind"))
    # dnsmasq cannot publish an A record without its PTR: it says so rather than ignore it.
    with pytest.raises(InvalidInput, match="reverseDns = False cannot be honoured"):
        create_backend(DhcpDnsSettings(dnsmasq_dir=tmp_path, reverse_dns=False))
    assert create_backend(DhcpDnsSettings(backend="fake", reverse_dns=False)).name == "fake"
