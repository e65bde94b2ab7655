"""Nothing leaked: what a virtual cluster's hosts and services hold, against its instances.

``look`` reads, for each host that runs a node manager, its namespace's links (every VM tap,
marked ``tashi-nic instance=...`` by the network drivers or named ``tashi<id>.<nic>``, and the
bridge and VXLAN device of each network), its node manager's VM directories
(``<state>/vms/<id>``) and overlay directories (``<host>/scratch/<id>``) and the processes in
its namespace; and, for the cluster as a whole, the suspend files of the image store
(``vfs/suspend/<id>_<name>.gz``), the DhcpDns hook's dnsmasq files (static leases
``dhcp-hosts.N``, names ``addn-hosts.N``) and dnsmasq's own lease files (``leases.N``), and the
processes of the cluster manager's namespace. ``judge`` (pure) compares all of it with the
instances the cluster manager lists and the address table (``GET /v1/addresses``):

* a host's taps, VM directories and overlays belong exactly to its Running and Paused
  instances (each has them all); a bridge or VXLAN device only to a network one of its taps
  is on (what an instance still in flight holds is left to ``one_place``, which reports it);
* suspend files belong exactly to Suspended instances;
* every static lease, DNS name and address-table row is an existing instance's NIC (same MAC,
  same address), and every NIC with an address has all three; a DHCP lease dnsmasq holds is
  an existing NIC's;
* no process runs in the cluster's namespaces besides its daemons (as ``cluster.json``
  records them), each host's watchdog, and the live QEMU processes of that host.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tashi.api.schemas import AddressOut, InstanceOut
from tashi.devcluster import configs, fabric, strays
from tashi.devcluster.invariants import ON_HOST, STABLE
from tashi.devcluster.qemuwatch import Life
from tashi.devcluster.state import Layout, State, host_name

_NIC_MARK = re.compile(r"tashi-nic instance=(\d+) ")
_NET_MARK = re.compile(r"tashi-(bridge|vxlan) network=(\d+)")
_TAP_NAME = re.compile(r"tashi(\d+)\.\d+|tsh[0-9a-f]{12}")
_SUSPEND = re.compile(r"(\d+)_.*\.gz(\.partial)?")
UNKNOWN = -1  # a tap whose owner neither its mark nor its name tells


@dataclass
class HostLook:
    number: int
    taps: dict[str, int] = field(default_factory=dict)  # tap name -> instance id
    networks: dict[str, int] = field(default_factory=dict)  # bridge/vxlan name -> network
    tap_networks: set[int] = field(default_factory=set)  # networks its taps are on
    vm_dirs: set[int] = field(default_factory=set)
    scratch: set[int] = field(default_factory=set)
    processes: dict[int, str] = field(default_factory=dict)  # pid -> command line
    links_read: bool = True  # False: `ip link` failed in its namespace

    @property
    def name(self) -> str:
        return host_name(self.number)


@dataclass
class ClusterLook:
    hosts: list[HostLook]
    cm_processes: dict[int, str]
    suspend_files: dict[str, int]  # file name -> instance id
    static_leases: dict[int, set[tuple[str, str]]]  # network -> {(mac, ip)}
    names: dict[int, set[str]]  # network -> {ip}
    dhcp_leases: dict[int, set[tuple[str, str]]]  # network -> {(mac, ip)}


# --- looking ---------------------------------------------------------------------------------


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _processes(netns: str) -> dict[int, str]:
    found = {}
    for pid in fabric.processes_in(netns):
        line = _cmdline(pid)
        if line is not None:
            found[pid] = line
    return found


def _links(netns: str) -> list[dict[str, object]] | None:
    """The namespace's links as ``ip -j -d link`` shows them; ``None`` if it could not."""
    done = subprocess.run(
        ["ip", "-j", "-d", "-n", netns, "link", "show"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    try:
        links = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        return None
    return links if isinstance(links, list) else None


def _numbered(directory: Path) -> set[int]:
    try:
        return {int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()}
    except FileNotFoundError:
        return set()


def look_host(layout: Layout, state: State, number: int) -> HostLook:
    netns = configs.plan(state).host_ns(number)
    found = HostLook(number)
    links = _links(netns)
    found.links_read = links is not None
    for link in links or []:
        name, alias = str(link.get("ifname", "")), str(link.get("ifalias", ""))
        info = link.get("linkinfo")
        kind = info.get("info_kind") if isinstance(info, dict) else None
        if (net := _NET_MARK.fullmatch(alias)) is not None:
            found.networks[name] = int(net.group(2))
        elif kind == "tun" and (mark := _NIC_MARK.match(alias)) is not None:
            found.taps[name] = int(mark.group(1))
            found.tap_networks.add(int(alias.rpartition("network=")[2].split()[0]))
        elif kind == "tun" and (named := _TAP_NAME.fullmatch(name)) is not None:
            found.taps[name] = int(named.group(1)) if named.group(1) else UNKNOWN
    found.vm_dirs = _numbered(layout.nm_state(number) / "vms")
    found.scratch = _numbered(layout.host(number) / "scratch")
    found.processes = _processes(netns)
    return found


def _lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line.replace(",", " ").split() for line in text.splitlines() if line.strip()]


def look(layout: Layout, state: State) -> ClusterLook:
    """Everything ``judge`` compares, read now."""
    dnsmasq = layout.root / "dnsmasq"
    suspend = layout.vfs / "suspend"
    files = sorted(suspend.iterdir()) if suspend.is_dir() else []
    return ClusterLook(
        hosts=[look_host(layout, state, n) for n in sorted(state.hosts)],
        cm_processes=_processes(configs.plan(state).cm_ns),
        suspend_files={
            p.name: int(m.group(1)) if (m := _SUSPEND.fullmatch(p.name)) else UNKNOWN for p in files
        },
        static_leases={
            n: {(f[0].lower(), f[1]) for f in _lines(dnsmasq / f"dhcp-hosts.{n}") if len(f) > 1}
            for n in state.networks
        },
        names={n: {f[0] for f in _lines(dnsmasq / f"addn-hosts.{n}") if f} for n in state.networks},
        dhcp_leases={
            n: {(f[1].lower(), f[2]) for f in _lines(dnsmasq / f"leases.{n}") if len(f) > 2}
            for n in state.networks
        },
    )


# --- judging ---------------------------------------------------------------------------------


def _host_leaks(
    h: HostLook, mine: set[int], tapped: set[int], expected: dict[int, str], moving: set[int]
) -> list[str]:
    """``mine``: the instances running there; ``tapped``: those of them with NICs; ``moving``:
    instances in flight, not judged."""
    found = [] if h.links_read else [f"{h.name}: cannot list the links of its namespace"]
    for tap, iid in sorted(h.taps.items()):
        if iid not in mine and iid not in moving:
            found.append(f"{h.name}: tap {tap} of instance {iid}, which does not run there")
    for iid in sorted(tapped - set(h.taps.values())):
        found.append(f"{h.name}: instance {iid} runs there without its tap")
    for what, ids in (("VM directory", h.vm_dirs), ("overlay directory", h.scratch)):
        for iid in sorted(ids - mine - moving):
            found.append(f"{h.name}: {what} of instance {iid}, which does not run there")
        for iid in sorted(mine - ids):
            found.append(f"{h.name}: instance {iid} runs there without its {what}")
    for link, network in sorted(h.networks.items()):
        if network not in h.tap_networks:
            found.append(f"{h.name}: {link} of network {network}, which no tap there is on")
    for pid, line in sorted(h.processes.items()):
        if pid not in expected:
            found.append(f"{h.name}: stray process {pid}: {line[:160]}")
    for pid, what in sorted(expected.items()):
        if pid not in h.processes:
            found.append(f"{h.name}: its {what} (pid {pid}) is not running")
    return found


def _nics(instances: Sequence[InstanceOut]) -> dict[int, set[tuple[str, str]]]:
    found: dict[int, set[tuple[str, str]]] = {}
    for inst in instances:
        for nic in inst.nics:
            if nic.ip is not None:
                found.setdefault(nic.network, set()).add((nic.mac.lower(), nic.ip))
    return found


def _dhcp_leaks(look: ClusterLook, nics: dict[int, set[tuple[str, str]]]) -> list[str]:
    found = []
    for network, entries in sorted(look.static_leases.items()):
        wanted = nics.get(network, set())
        for mac, ip in sorted(entries - wanted):
            found.append(f"net{network}: static lease {mac} {ip} of no instance's NIC")
        for mac, ip in sorted(wanted - entries):
            found.append(f"net{network}: NIC {mac} {ip} has no static lease")
        ips = {ip for _, ip in wanted}
        for ip in sorted(look.names.get(network, set()) - ips):
            found.append(f"net{network}: DNS name for {ip}, no instance's address")
        for ip in sorted(ips - look.names.get(network, set())):
            found.append(f"net{network}: address {ip} has no DNS name")
        for mac, ip in sorted(look.dhcp_leases.get(network, set()) - wanted):
            found.append(f"net{network}: dnsmasq holds a DHCP lease {mac} {ip} of no NIC")
    return found


def _address_leaks(addresses: Sequence[AddressOut], instances: Sequence[InstanceOut]) -> list[str]:
    found = []
    by_id = {i.id: i for i in instances}
    rows = set()
    for a in addresses:
        rows.add((a.instanceId, a.nicIndex, a.ip))
        inst = by_id.get(a.instanceId)
        if inst is None:
            found.append(f"address {a.ip} (net{a.network}) of instance {a.instanceId}, gone")
        elif a.nicIndex >= len(inst.nics) or inst.nics[a.nicIndex].ip != a.ip:
            found.append(f"address {a.ip} of {inst.name} NIC {a.nicIndex}: the NIC says otherwise")
    for inst in instances:
        for index, nic in enumerate(inst.nics):
            if nic.ip is not None and (inst.id, index, nic.ip) not in rows:
                found.append(f"{inst.name} NIC {index} has {nic.ip}, not in the address table")
    return found


def judge(
    look: ClusterLook,
    state: State,
    instances: Sequence[InstanceOut],
    host_names: dict[int, str],
    lives: Iterable[Life],
    addresses: Sequence[AddressOut],
) -> list[str]:
    """Every leak ``look`` shows (see the module doc)."""
    found = []
    # An instance still in flight (reported by one_place) has whatever its operation left:
    # its taps, directories and files are not judged until it settles.
    moving = {i.id for i in instances if i.state not in STABLE | {"Held"}}
    qemu: dict[str, dict[int, str]] = {}
    for life in lives:
        if life.ended is None:
            qemu.setdefault(life.host, {})[life.pid] = f"qemu of instance {life.instance}"
    for h in look.hosts:
        here = [
            i
            for i in instances
            if i.state in ON_HOST and i.hostId is not None and host_names.get(i.hostId) == h.name
        ]
        mine, tapped = {i.id for i in here}, {i.id for i in here if i.nics}
        expected = dict(qemu.get(h.name, {}))
        expected[state.hosts[h.number].pid] = "node manager"
        watchdogs = [p for p, line in h.processes.items() if strays.WATCHDOG_MARK.decode() in line]
        if len(watchdogs) == 1:
            expected[watchdogs[0]] = "watchdog"
        elif not watchdogs:
            found.append(f"{h.name}: no watchdog runs")
        found += _host_leaks(h, mine, tapped, expected, moving)
    daemons = {p.pid for p in state.daemons.values()}
    for pid, line in sorted(look.cm_processes.items()):
        if pid not in daemons:
            found.append(f"cluster manager's namespace: stray process {pid}: {line[:160]}")
    suspended = {i.id for i in instances if i.state == "Suspended"}
    states = {i.id: i.state for i in instances}
    for name, iid in sorted(look.suspend_files.items()):
        if iid not in suspended and iid not in moving:
            now = f"is {states[iid]}" if iid in states else "is gone"
            found.append(f"suspend file {name} left: its instance {now}")
    for iid in sorted(suspended - set(look.suspend_files.values())):
        found.append(f"instance {iid} is Suspended without a suspend file")
    found += _dhcp_leaks(look, _nics(instances))
    found += _address_leaks(addresses, instances)
    return found
