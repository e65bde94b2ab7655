"""The virtual cluster's DHCP and DNS servers: dnsmasq processes in the cluster manager's
namespace, which has a leg on every VM network.

One dnsmasq per VM network serves the files the scheduler's DhcpDns hook writes
(``[DhcpDns] dnsmasqDir``, see ``configs.agent_config``): ``tashi-cluster`` starts and owns these
processes, the hook only rewrites their files and sends SIGHUP to the pid in their pid files.
Each is recorded in the state file like the other daemons (``control.spawn``), so ``rm dnsmasq`` and
``add dnsmasq`` crash and restart them (``prune_leases`` first), and ``stop`` ends them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tashi.config.cluster import ClusterSettings
from tashi.devcluster import configs, control, processes
from tashi.devcluster.state import Layout, State
from tashi.dhcpdns.backends.dnsmasq import DnsmasqServer, hosts_file, leases_file, names_file
from tashi.domain.ids import NetworkId


def _run(daemon: processes.Daemon, key: str, layout: Layout, state: State) -> None:
    state.daemons[key] = control.spawn(daemon)
    layout.save(state)
    daemon.wait_healthy()


def start_servers(settings: ClusterSettings, layout: Layout, state: State) -> None:
    """Start one dnsmasq per VM network, serving the files the DhcpDns hook writes, and wait
    until each is ready (it wrote its pid file, which it does once it has bound its sockets)."""
    dhcpdns = configs.dhcpdns_settings(settings, layout)
    dhcpdns.dnsmasq_dir.mkdir(parents=True, exist_ok=True)
    # `ip netns exec <cm namespace>` resolves VM names through network 1's dnsmasq.
    etc = Path("/etc/netns") / configs.plan(state).cm_ns
    etc.mkdir(parents=True, exist_ok=True)
    state.files.append(str(etc))
    layout.save(state)
    first = configs.service_address(settings, state.networks[0])
    (etc / "resolv.conf").write_text(f"nameserver {first}\nsearch {settings.domain}\n")
    for network_id in state.networks:
        server = DnsmasqServer(
            dhcpdns,
            NetworkId(network_id),
            interface=f"vxbr{network_id}",
            subnet=str(configs.network_subnet(settings, network_id)),
        )
        for path in (
            hosts_file(dhcpdns, server.network_id),
            names_file(dhcpdns, server.network_id),
        ):
            path.touch()
        server.pid_file.unlink(missing_ok=True)
        # Not DnsmasqServer.start: it keeps dnsmasq's stderr on a pipe to this short-lived
        # process, and dnsmasq, once we are gone, dies of SIGPIPE at its first reload
        # (SIGHUP from the scheduler's hook). Here its stderr goes to a file.
        daemon = control.helper(settings, layout, state, f"dnsmasq-{network_id}")
        binary, *options = server.argv()
        daemon.argv = [shutil.which(binary) or binary, *options]  # enter execs, no PATH
        daemon.pid_file = server.pid_file
        _run(daemon, f"dnsmasq.{network_id}", layout, state)


def prune_leases(settings: ClusterSettings, layout: Layout, state: State, key: str) -> list[str]:
    """Before the dnsmasq recorded as ``key`` (``dnsmasq.<network>``) starts again: drop from
    its lease file the leases of MACs its hosts file no longer lists (with ``static`` ranges it
    hands out nothing else), so that a lease whose release the DhcpDns hook could not send
    while this dnsmasq was down does not come back with it, name and all, until the lease time
    or the network's next change. Nothing while it still runs (the file is its own then). The
    MACs dropped."""
    proc = state.daemons.get(key)
    network = key.partition(".")[2]
    if proc is None or not network.isdigit() or processes.alive(proc.pid, proc.started):
        return []
    dhcpdns = configs.dhcpdns_settings(settings, layout)
    ours = NetworkId(int(network))
    try:
        hosts = hosts_file(dhcpdns, ours).read_text().splitlines()
        leases = leases_file(dhcpdns, ours).read_text().splitlines()
    except FileNotFoundError:
        return []
    known = {line.split(",")[0].strip().lower() for line in hosts if line.strip()}
    kept, dropped = [], []
    for line in leases:  # expiry mac ip hostname client-id
        fields = line.split()
        if len(fields) > 1 and fields[1].lower() not in known:
            dropped.append(fields[1])
        else:
            kept.append(line)
    if dropped:
        tmp = leases_file(dhcpdns, ours).with_suffix(".pruned")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        tmp.replace(leases_file(dhcpdns, ours))
    return dropped
