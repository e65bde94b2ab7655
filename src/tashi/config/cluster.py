"""``[Cluster]``: the virtual cluster ``tashi-cluster`` runs on one machine; gathered in
``settings.Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tashi.config.options import option


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    SECTION: ClassVar[str] = "Cluster"
    DOC: ClassVar[str] = (
        "tashi-cluster: a whole cluster on one machine, each host a network namespace"
        " (~/.tashi/Cluster.cfg overrides; see docs/cluster.md)."
    )

    state_dir: Path = option(
        "stateDir",
        Path("/var/lib/tashi-cluster"),
        "Directory of the running cluster: its pids, namespaces, configs, logs, database and"
        " VM files. One cluster per directory; stop removes it.",
    )
    hosts: int = option("hosts", 3, "Hosts `tashi-cluster start` starts by default.", minimum=1)
    host_memory: int = option(
        "hostMemory",
        2048,
        "Memory (MB) each virtual host offers to VMs. start checks that the machine has it for"
        " every host (plus about 100 MB per node manager) before it starts anything. The node"
        " managers advertise it ([NodeManager] memory).",
        minimum=64,
    )
    host_cores: int = option(
        "hostCores",
        4,
        "Cores each virtual host advertises ([NodeManager] cores), whatever the machine has.",
        minimum=1,
    )
    cpu_cores_over_rate: float = option(
        "cpuCoresOverRate",
        4.0,
        "[ClusterManagerService] cpuCoresOverRate of the cluster: a host takes VMs with up to"
        " hostCores times this many cores in all (tiny guests mostly idle; they share the"
        " machine's processors anyway).",
        minimum=0.01,
    )
    image: Path = option(
        "image",
        Path("var/images/tashi-tiny.qcow2"),
        "Guest image put into the cluster's image store (relative: to the current directory)."
        " The default tiny guest is built (tashi-image build) when it is missing.",
    )
    images: str = option(
        "images",
        "",
        "More images put into the image store beside `image`, by commas (relative: to the"
        " current directory), each with its sidecars, e.g. var/images/tashi-debian.qcow2 (make"
        " debian-image). Each must exist; kernel and initrd apply to `image` only.",
    )
    kernel: str = option(
        "kernel", "", "Kernel to boot the image with. Empty: the image's .kernel sidecar."
    )
    initrd: str = option(
        "initrd", "", "Initrd to boot the image with. Empty: the image's .initrd sidecar."
    )
    networks: str = option(
        "networks",
        "1 2",
        "Ids of the VM networks (VXLAN segments) the cluster defines, named net<id>; the first"
        " is the default network. Ids 1 to 255 (each gets a /24 of vmAddresses).",
    )
    fabric: str = option(
        "fabric",
        "198.18.0.0/20",
        "Subnet of the virtual 'physical' network joining the hosts (inside 198.18.0.0/15):"
        " the cluster manager has its first address, host i its (256+i)-th, the root"
        " namespace's one veth its last. Two clusters at once need two fabrics.",
    )
    vm_addresses: str = option(
        "vmAddresses",
        "198.19.0.0/16",
        "Addresses of the VM networks: network id i uses the i-th /24 (.1 is the cluster"
        " manager's side, where dnsmasq answers; VMs get .10 to .250 by DHCP).",
    )
    domain: str = option("domain", "tashi.test", "DNS domain of the VMs' names.")
    accel: str = option(
        "accel",
        "tcg",
        "[Qemu] accel of the virtual hosts: tcg, kvm or auto (auto probes KVM at each node"
        " manager's start, which costs up to kvmProbeTimeout).",
    )
    heartbeat: float = option(
        "heartbeat", 1.0, "[NodeManagerService] registerFrequency of the hosts.", minimum=0.1
    )
    expire_host_time: float = option(
        "expireHostTime",
        5.0,
        "[ClusterManagerService] expireHostTime: seconds without a heartbeat before a host is"
        " marked down.",
        minimum=0.1,
    )
    host_lease_time: float = option(
        "hostLeaseTime",
        6.0,
        "[ClusterManagerService] hostLeaseTime: after it (plus restartMargin) a lost host's"
        " VMs are started elsewhere.",
        minimum=0,
    )
    start_timeout: float = option(
        "startTimeout", 60.0, "Seconds a daemon may take to answer /health.", minimum=1
    )
    sql_uri: str = option(
        "sqlUri",
        "",
        "[SQL] uri of the cluster manager (empty: SQLite in its state directory). The cluster"
        " manager runs in its own network namespace: reach a server on this machine by its"
        " Unix socket, e.g. postgresql://tashi@/tashi?host=/run/postgresql.",
    )
    sql_password: str = option("sqlPassword", "", "[SQL] password of the cluster manager.")
    xmpp: bool = option(
        "xmpp",
        False,
        "Also run prosody, tashi-xmpp and the cluster manager's XMPP event publisher (SLA@SOI),"
        " as start --xmpp does. See docs/xmpp.md.",
    )
    max_log_size: int = option(
        "maxLogSize",
        4_194_304,
        "[Logging] maxLogSize of the hosts, and the cap of the cluster's other logs (the"
        " daemons', dnsmasq's): past it a log's newest this many bytes move to <log>.1.",
        minimum=65536,
    )
