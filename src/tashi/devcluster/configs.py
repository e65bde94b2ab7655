"""The config files of a virtual cluster's daemons, as plain section dictionaries.

Pure functions of the ``[Cluster]`` settings, the state and the layout: what a site would write
by hand into ``ClusterManager.cfg``, ``NodeManager.cfg`` and ``Agent.cfg`` for a cluster whose
hosts are network namespaces on one machine. ``cluster.py`` writes them with
``processes.write_config``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from tashi.config.cluster import ClusterSettings
from tashi.config.network import DhcpDnsSettings
from tashi.devcluster.fabric import Plan
from tashi.devcluster.state import Layout, State, host_name

Sections = dict[str, dict[str, object]]
NM_PORT = 9883
NODE_USER = "node"
AGENT_USER = "scheduler"
NM_OVERHEAD_MB = 100  # a node manager's own memory, with room for qemu's outside the guest


def plan(state: State) -> Plan:
    return Plan(state.tag, ipaddress.IPv4Network(state.fabric))


def network_subnet(settings: ClusterSettings, network_id: int) -> ipaddress.IPv4Network:
    base = ipaddress.IPv4Network(settings.vm_addresses)
    return list(base.subnets(new_prefix=24))[network_id]


def service_address(settings: ClusterSettings, network_id: int) -> str:
    """The cluster manager side's address on a VM network (where dnsmasq answers)."""
    return str(network_subnet(settings, network_id).network_address + 1)


def ip_range(settings: ClusterSettings, network_id: int) -> str:
    """``[DhcpDns] ipRange<id>``: the addresses VMs get by DHCP."""
    net = network_subnet(settings, network_id).network_address
    return f"{net + 10}-{net + 250}"


def cm_config(settings: ClusterSettings, state: State, layout: Layout) -> Sections:
    return {
        "ClusterManager": {"stateDir": layout.cm / "state"},
        "ClusterManagerService": {
            "host": plan(state).cm_address,
            "port": state.cm_port,
            "expireHostTime": settings.expire_host_time,
            "cpuCoresOverRate": settings.cpu_cores_over_rate,
            "hostLeaseTime": settings.host_lease_time,
            "restartMargin": 1.0,
            "reconcileGrace": 2.0,
        },
        "Vfs": {"prefix": layout.vfs},
        "Logging": {"level": "INFO"},
        **_sql(settings),
    }


def _sql(settings: ClusterSettings) -> Sections:
    if not settings.sql_uri:
        return {}
    return {"SQL": {"uri": settings.sql_uri, "password": settings.sql_password}}


def host_addresses(state: State) -> list[str]:
    """The fabric addresses of the hosts started (where the cluster manager's side floods)."""
    fabric = plan(state)
    return [fabric.host_address(n) for n in sorted(state.hosts)]


def nm_config(
    settings: ClusterSettings,
    state: State,
    layout: Layout,
    number: int,
    node_password: str,
) -> Sections:
    fabric = plan(state)
    address = fabric.host_address(number)
    root = layout.host(number)
    return {
        "NodeManagerService": {
            "host": address,
            "port": NM_PORT,
            "name": host_name(number),
            "advertise": f"http://{address}:{NM_PORT}",
            "clusterManagerHost": fabric.cm_address,
            "clusterManagerPort": state.cm_port,
            "registerFrequency": settings.heartbeat,
            "stateDir": layout.nm_state(number),
        },
        "NodeManager": {
            "vmm": "qemu",
            "network": "vxlan",
            "scratchDir": root / "scratch",
            # What the host advertises, whatever the machine has.
            "cores": settings.host_cores,
            "memory": settings.host_memory,
        },
        # The other hosts come from the cluster manager (heartbeat replies); its own side is
        # no node manager, so it is the one static peer.
        "Vxlan": {"underlayDevice": "eth0", "peers": fabric.cm_address},
        "Qemu": {
            "accel": settings.accel,
            "cgroupRoot": Path(state.cgroup) / host_name(number),
            "shutdownGrace": 10,
        },
        "AccessClusterManager": {"username": NODE_USER, "password": node_password},
        "Vfs": {"prefix": layout.vfs},
        "Logging": {"level": "INFO", "maxLogSize": settings.max_log_size},
    }


def agent_config(
    settings: ClusterSettings, state: State, layout: Layout, password: str
) -> Sections:
    """``Agent.cfg`` of the scheduler, with the DHCP/DNS hook (it ships with Tashi, in the
    scheduler's hook table) serving the dnsmasqs of ``dhcp.py``."""
    return {
        "Client": {
            "clusterManagerHost": plan(state).cm_address,
            "clusterManagerPort": state.cm_port,
        },
        "AccessClusterManager": {"username": AGENT_USER, "password": password},
        # The cluster manager's over-commit, as a site's shared Tashi.cfg gives it to both:
        # without it the scheduler planned with none and held VMs the hosts had room for.
        "ClusterManagerService": {"cpuCoresOverRate": settings.cpu_cores_over_rate},
        "Scheduler": {"hook1": "DhcpDns"},
        "Logging": {"level": "INFO"},
        "DhcpDns": dhcpdns_options(settings, state, layout),
    }


def dhcpdns_settings(settings: ClusterSettings, layout: Layout) -> DhcpDnsSettings:
    return DhcpDnsSettings(dns_domain=settings.domain, dnsmasq_dir=layout.root / "dnsmasq")


def dhcpdns_options(settings: ClusterSettings, state: State, layout: Layout) -> dict[str, object]:
    options: dict[str, object] = {
        "dnsDomain": settings.domain,
        "dnsmasqDir": dhcpdns_settings(settings, layout).dnsmasq_dir,
    }
    for network_id in state.networks:
        options[f"ipRange{network_id}"] = ip_range(settings, network_id)
    return options


def client_config(state: State, username: str, password: str) -> Sections:
    return {
        "Client": {
            "clusterManagerHost": plan(state).cm_address,
            "clusterManagerPort": state.cm_port,
        },
        "AccessClusterManager": {"username": username, "password": password},
    }
