"""The VM networks' sections: the host networking drivers (``[Bridge]``, ``[Vxlan]``) and the
DHCP/DNS hook and its backends (``[DhcpDns]``); gathered in ``settings.Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tashi.config.options import option


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    SECTION: ClassVar[str] = "Bridge"
    DOC: ClassVar[str] = (
        "The bridge network driver: one Linux bridge per network id, each VM NIC a tap on it."
    )

    bridge_format: str = option(
        "bridgeFormat",
        "br%s",
        "Name of the bridge of a network, %s being the network id (the original"
        " defaultBridgeFormat). At most 15 characters once filled in.",
    )
    ifup_dir: Path = option(
        "ifupDir",
        Path("/etc"),
        "Directory of the qemu-ifup.<networkId> scripts. When an executable script exists for a"
        " network, QEMU creates the tap and runs the script, which attaches it (the original"
        " convention); otherwise the node manager makes the tap and puts it on the bridge.",
    )
    create_bridges: bool = option(
        "createBridges",
        True,
        "Create the bridge of a network when it is missing (and no qemu-ifup script exists)."
        " False: a missing bridge is an error that names it.",
    )


@dataclass(frozen=True, slots=True)
class VxlanSettings:
    SECTION: ClassVar[str] = "Vxlan"
    DOC: ClassVar[str] = (
        "The vxlan network driver: per network id one bridge plus one VXLAN device (VNI = network"
        " id) over the host's underlay, so the VMs of a network on different hosts share one L2"
        " segment. Unicast only: broadcasts are copied to every peer (head-end replication)."
    )

    underlay_device: str = option(
        "underlayDevice",
        "",
        "Interface the VXLAN packets leave by (the physical or underlay network). Its first"
        " IPv4 address is the local address unless localAddress is set.",
    )
    local_address: str = option(
        "localAddress",
        "",
        "This host's IPv4 address on the underlay (the VXLAN source address). One of"
        " underlayDevice and localAddress is required.",
    )
    port: int = option(
        "port", 4789, "UDP port of the VXLAN tunnels (the IANA port).", minimum=1, maximum=65535
    )
    mtu: int = option(
        "mtu",
        0,
        "MTU of the VXLAN devices, bridges and taps. 0: the underlay's MTU less the 50 bytes"
        " of VXLAN encapsulation (1450 on a 1500 underlay).",
        minimum=0,
        maximum=65535,
    )
    bridge_prefix: str = option(
        "bridgePrefix",
        "vxbr",
        "Name of the bridge of network N: this prefix then N (vxbr7). At most 7 characters.",
    )
    vxlan_prefix: str = option(
        "vxlanPrefix",
        "vxlan",
        "Name of the VXLAN device of network N: this prefix then N (vxlan7). At most 7 characters.",
    )
    peers: str = option(
        "peers",
        "",
        "Underlay IPv4 addresses of the other hosts, separated by commas or spaces. The node"
        " manager adds the addresses its cluster manager reports for the other up hosts.",
    )


@dataclass(frozen=True, slots=True)
class DhcpDnsSettings:
    SECTION: ClassVar[str] = "DhcpDns"
    DOC: ClassVar[str] = (
        "The DhcpDns scheduler hook (hook1 = DhcpDns in [Scheduler] or [Primitive]): an address"
        " per NIC from ipRange<networkId> (e.g. ipRange2 = 198.19.2.10-198.19.2.250), kept in"
        " the cluster's database, and a static DHCP lease plus DNS records for it. Networks"
        " without an ipRange are left alone. Only this program's files need the section."
    )

    backend: str = option(
        "backend",
        "dnsmasq",
        "Where leases and records go: dnsmasq (files one dnsmasq per network reads, reloaded"
        " with SIGHUP) or fake (tests only).",
    )
    dns_domain: str = option(
        "dnsDomain",
        "tashi.example.com",
        "Domain of the VMs' names: NIC 0 of VM web is web.<dnsDomain>, NIC i is web-nic<i>.",
    )
    dns_expire: int = option(
        "dnsExpire", 300, "TTL (seconds) of the DNS records.", minimum=0, maximum=2147483647
    )
    reverse_dns: bool = option(
        "reverseDns",
        True,
        "Publish PTR records too. The dnsmasq backend always answers the PTR of a name it"
        " publishes, so it refuses False (see docs/dhcpdns.md).",
    )
    dns_server: str = option(
        "dnsServer",
        "",
        "Original option (nsupdate's server); read by the ISC/BIND backend to come.",
    )
    dns_key_file: str = option(
        "dnsKeyFile", "", "Original option (nsupdate's key); for the ISC/BIND backend to come."
    )
    dhcp_server: str = option(
        "dhcpServer", "", "Original option (omshell's server); for the ISC/BIND backend to come."
    )
    dnsmasq_dir: Path = option(
        "dnsmasqDir",
        Path("/var/lib/tashi/dnsmasq"),
        "Directory of the files dnsmasq reads: for each network a leases file and a names"
        " file (named in docs/dhcpdns.md), rewritten atomically on every change.",
    )
    dnsmasq_pid_file: str = option(
        "dnsmasqPidFile",
        "dnsmasq.%s.pid",
        "Pid file of the dnsmasq serving a network (%s: the network id), relative to"
        " dnsmasqDir unless absolute; it gets SIGHUP after a change. A site running one"
        " dnsmasq of its own for all networks names its pid file (no %s).",
    )
