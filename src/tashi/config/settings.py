"""Every setting Tashi reads, one frozen dataclass per ``.cfg`` section.

Option names are the original Tashi's wherever one existed. Sections that later components add
(node manager, QEMU, scheduler, DHCP/DNS) get their own dataclass here, so that the shipped
``TashiDefaults.cfg`` (generated from these classes, see ``defaults.py``) documents every option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tashi.config.options import option


# The limits every HTTP server of Tashi applies to what its clients send (tashi.web.limits);
# the cluster manager's API and the node API each have them in their own section.
def _max_request_body() -> Any:
    return option(
        "maxRequestBody",
        1_048_576,
        "Largest request body, in bytes, the API accepts: a larger one is answered 413 before"
        " it is read (by its Content-Length, or as it streams in). No route takes uploads"
        " (images are copied on the shared store, never sent through the API).",
        minimum=1024,
    )


def _request_head_timeout() -> Any:
    return option(
        "requestHeadTimeout",
        10.0,
        "Seconds a client has to send a request's line and headers, from its connection or the"
        " end of the previous answer on it; then the connection is closed (a client that"
        " dribbles its request holds nothing longer). A head over 64 KiB is refused (431).",
        minimum=0.1,
    )


def _request_body_timeout() -> Any:
    return option(
        "requestBodyTimeout",
        30.0,
        "Seconds a client has to send a request's whole body once its head is in; past it the"
        " request is answered 408.",
        minimum=0.1,
    )


def _max_connections() -> Any:
    return option(
        "maxConnections",
        1000,
        "Most connections and requests in progress at once; past it a new request is answered"
        " 503 at once (uvicorn's limit_concurrency). Keep it well above the connections its"
        " clients keep open (an httpx client, as the cluster manager's to one node manager,"
        " opens up to 100).",
        minimum=1,
    )


@dataclass(frozen=True, slots=True)
class ClusterManagerSettings:
    SECTION: ClassVar[str] = "ClusterManager"
    DOC: ClassVar[str] = (
        "Where the cluster manager keeps its own files, and how long it keeps instance history."
    )

    state_dir: Path = option(
        "stateDir",
        Path("/var/lib/tashi"),
        "Directory for the cluster manager's database (SQLite default) and the admin credential"
        " file written at first start. Created with mode 0700.",
    )
    admin_credentials: str = option(
        "adminCredentials",
        "admin-credentials.cfg",
        "File (relative to stateDir) where the first start writes the generated admin user and"
        " password, readable only by its owner. Use it as a client config: TASHI_CONFIG=<file>.",
    )
    history_lifetime: float = option(
        "historyLifetime",
        2_592_000.0,
        "Seconds an event of an instance's history is kept (30 days); older ones are purged"
        " hourly. A VM a host reports for an instance removed longer ago than this (its history"
        " gone) is adopted rather than stopped.",
        minimum=3600,
    )
    history_per_instance: int = option(
        "historyPerInstance",
        100,
        "Most events kept of one instance's history: its newest ones. HA reads an instance's"
        " newest 20 back to settle one lost with its host, hence the minimum.",
        minimum=20,
    )


@dataclass(frozen=True, slots=True)
class ClusterManagerServiceSettings:
    SECTION: ClassVar[str] = "ClusterManagerService"
    DOC: ClassVar[str] = "The cluster manager's API and the rules it enforces on requests."

    host: str = option(
        "host",
        "localhost",
        "Address the HTTP API listens on. Use 0.0.0.0 to serve node managers on other machines;"
        " every call except /health and /metrics needs credentials.",
    )
    port: int = option("port", 9882, "TCP port of the HTTP API.", minimum=1, maximum=65535)
    expire_host_time: float = option(
        "expireHostTime",
        6.0,
        "Seconds without a heartbeat before a host is checked and marked down (the original's"
        " 30 s made HA restarts slow; see hostLeaseTime).",
        minimum=0.1,
    )
    allow_decayed: float = option(
        "allowDecayed",
        30.0,
        "Seconds the cluster manager trusts a host's report before it asks again.",
        minimum=0,
    )
    allow_mismatched_versions: bool = option(
        "allowMismatchedVersions",
        False,
        "Accept node managers whose version differs from the cluster manager's (otherwise such"
        " hosts become VersionMismatch and receive no VMs).",
    )
    max_memory: int = option(
        "maxMemory", 8192, "Largest memory (MB) one VM may ask for.", minimum=1
    )
    max_cores: int = option("maxCores", 8, "Most cores one VM may ask for.", minimum=1)
    default_network: int = option(
        "defaultNetwork",
        1,
        "Network id a NIC joins when the request names no network.",
        minimum=0,
        maximum=16777215,
    )
    allow_duplicate_names: bool = option(
        "allowDuplicateNames", False, "Allow two instances with the same name."
    )
    reconcile_grace: float = option(
        "reconcileGrace",
        10.0,
        "Seconds after a state change during which a host's report that disagrees is not yet"
        " acted upon (the report may predate the change). A start the cluster manager still"
        " awaits from a node manager is never failed by a report, however long it takes.",
        minimum=0,
    )
    max_batch: int = option(
        "maxBatch",
        1000,
        "Most instances one createMany, destroyMany or shutdownMany may touch.",
        minimum=1,
    )
    memory_over_rate: float = option(
        "memoryOverRate",
        1.0,
        "activateVm refuses a host whose placed instances' memory plus the new one's would"
        " exceed its memory times this rate (1.0: no over-commit). Schedulers read the same"
        " name for their own check before they ask.",
        minimum=0.01,
    )
    cpu_cores_over_rate: float = option(
        "cpuCoresOverRate",
        1.0,
        "As memoryOverRate, for cores: a host takes instances with up to its cores times this"
        " rate in all (SLA@SOI's name).",
        minimum=0.01,
    )
    host_lease_time: float = option(
        "hostLeaseTime",
        10.0,
        "HA lease, in seconds (ADR 0010): each heartbeat reply, and each answer of one of the"
        " host's witness hosts, grants the node manager this long; a host that had no grant"
        " from anyone for this long stops its own VMs, and only once the cluster manager and"
        " every witness have granted it nothing for this long (plus restartMargin) are its"
        " instances started elsewhere. Keep it above twice registerFrequency. 0 turns HA off:"
        " no lease, no self-fencing, no restart.",
        minimum=0,
    )
    restart_margin: float = option(
        "restartMargin",
        3.0,
        "Seconds the cluster manager waits after a lost host's lease ran out before its"
        " instances go back to Pending (covers clock-rate drift and the node's own"
        " self-fencing, or its watchdog's, which acts within half a second).",
        minimum=1,
    )
    lease_witnesses: int = option(
        "leaseWitnesses",
        2,
        "How many other hosts vouch for each host (ADR 0010). A host keeps its VMs while the"
        " cluster manager or any one witness answers it, so a cluster-manager outage stops no"
        " VM; a host cut off from all of them stops its VMs and is restarted elsewhere. More"
        " witnesses ride out more failures during an outage, but a lost host's VMs are"
        " restarted only once every witness has confirmed that it is silent.",
        minimum=1,
    )
    max_request_body: int = _max_request_body()
    request_head_timeout: float = _request_head_timeout()
    request_body_timeout: float = _request_body_timeout()
    max_connections: int = _max_connections()


@dataclass(frozen=True, slots=True)
class SqlSettings:
    SECTION: ClassVar[str] = "SQL"
    DOC: ClassVar[str] = "The database that holds all cluster state."

    uri: str = option(
        "uri",
        "",
        "Database URI. Empty: SQLite in stateDir/tashi.sqlite. Otherwise sqlite:///path,"
        " postgresql://user@host/db or mysql://user@host/db (MariaDB).",
    )
    password: str = option(
        "password", "", "Password for the database user, kept out of the URI (and out of logs)."
    )
    pool_size: int = option("poolSize", 8, "Connections kept open to a database server.", minimum=1)


@dataclass(frozen=True, slots=True)
class VfsSettings:
    SECTION: ClassVar[str] = "Vfs"
    DOC: ClassVar[str] = "The shared store every host mounts at the same path."

    prefix: Path = option(
        "prefix",
        Path("/var/lib/tashi/vfs"),
        "Root of the shared store: disk images live in <prefix>/images, suspend files in"
        " <prefix>/suspend.",
    )


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    SECTION: ClassVar[str] = "Security"
    DOC: ClassVar[str] = (
        "Authentication is always on; these tune it. (The original authAndEncrypt is gone.)"
    )

    token_lifetime: float = option(
        "tokenLifetime", 43200.0, "Seconds a bearer token stays valid after login.", minimum=1
    )
    login_failures: int = option(
        "loginFailures",
        5,
        "Failed logins for one user from one address within loginWindow after which that"
        " user's logins from that address are refused (429, Retry-After) until the oldest"
        " failure is older than loginWindow. A successful login clears the count.",
        minimum=1,
    )
    login_failures_per_source: int = option(
        "loginFailuresPerSource",
        20,
        "Failed logins from one address, for any users, within loginWindow after which every"
        " login from that address is refused (password spraying).",
        minimum=1,
    )
    login_failures_per_user: int = option(
        "loginFailuresPerUser",
        20,
        "Failed logins for one user, from any addresses, within loginWindow after which that"
        " user's logins are refused from every address that has failed for it; an address"
        " with no failure for the user is never refused by this limit, so the user can still"
        " log in from elsewhere.",
        minimum=1,
    )
    login_window: float = option(
        "loginWindow",
        300.0,
        "Seconds a failed login counts toward loginFailures, loginFailuresPerSource and"
        " loginFailuresPerUser.",
        minimum=1,
    )


@dataclass(frozen=True, slots=True)
class ClientSettings:
    SECTION: ClassVar[str] = "Client"
    DOC: ClassVar[str] = (
        "Where the tashi client finds the cluster manager (TASHI_CM_HOST/TASHI_CM_PORT override)."
    )

    cluster_manager_host: str = option("clusterManagerHost", "localhost", "Cluster manager host.")
    cluster_manager_port: int = option(
        "clusterManagerPort", 9882, "Cluster manager port.", minimum=1, maximum=65535
    )
    cluster_manager_timeout: float = option(
        "clusterManagerTimeout", 30.0, "Seconds the client waits for an answer.", minimum=0.1
    )


@dataclass(frozen=True, slots=True)
class AccessClusterManagerSettings:
    SECTION: ClassVar[str] = "AccessClusterManager"
    DOC: ClassVar[str] = (
        "Credentials used toward the cluster manager (client, agents, node managers). Keep the"
        " file that holds them private. TASHI_USER/TASHI_PASSWORD/TASHI_TOKEN override."
    )

    username: str = option("username", "", "User name to log in as.")
    password: str = option("password", "", "Password of that user.")
    token: str = option("token", "", "A bearer token to use instead of a user name and password.")


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    SECTION: ClassVar[str] = "Scheduler"
    DOC: ClassVar[str] = (
        "tashi-scheduler, the scheduling agent (SLA@SOI's section; it replaces [Primitive], whose"
        " options still work). It reaches the cluster manager at [Client] clusterManagerHost/"
        "clusterManagerPort as the [AccessClusterManager] user, of role agent. Hooks: hook1,"
        " hook2, ... = DhcpDns (or module:function). See docs/scheduler.md."
    )
    OPEN_OPTIONS: ClassVar[str] = r"hook\d+"

    scheduler: str = option(
        "scheduler",
        "primitive",
        "Placement policy: primitive (the original), priority, balanced or consolidated"
        " (SLA@SOI; their class names tashi.scheduler.ConsolidatedScheduler etc. work too).",
    )
    schedule_delay: float = option(
        "scheduleDelay",
        2.0,
        "Seconds before a held instance (no host could take it) is tried again; the delay doubles"
        " with each failure up to maxHoldDelay, and resets when free capacity grows. New work is"
        " noticed at once through the cluster manager's change feed, not by polling.",
        minimum=0.01,
    )
    max_hold_delay: float = option(
        "maxHoldDelay", 60.0, "Longest delay between two tries of a held instance.", minimum=0.01
    )
    watch_timeout: float = option(
        "watchTimeout",
        25.0,
        "Seconds one long-poll of the change feed waits when nothing changes (then the agent"
        " reads the cluster anyway).",
        minimum=0.1,
        maximum=60,
    )
    concurrency: int = option(
        "concurrency", 8, "Activations the agent has in flight at once.", minimum=1
    )
    load_expression: str = option(
        "loadExpression",
        "memUsage + coresUsage * 512 + cpuUsage",
        "SLA@SOI: a host's load for priority/balanced/consolidated, over memUsage (MB used),"
        " coresUsage, cpuUsage (reported load), memory, cores, freeMemory, freeCores, cpuSpeed"
        " and instances, with + - * / // % and parentheses (checked at start; never eval'd).",
    )
    cpu_cores_over_rate: float = option(
        "cpuCoresOverRate",
        0.0,
        "Cores over-commit the scheduler plans with (1: none). 0: the cluster manager's"
        " [ClusterManagerService] cpuCoresOverRate, which its claims enforce anyway.",
        minimum=0,
    )
    memory_over_rate: float = option(
        "memoryOverRate",
        0.0,
        "Memory over-commit the scheduler plans with. 0: [ClusterManagerService] memoryOverRate.",
        minimum=0,
    )
    cpu_speed_over_rate: float = option(
        "cpuSpeedOverRate",
        1.0,
        "SLA@SOI policies: a host's cores x cpuSpeed x this rate bounds the sum of its VMs'"
        " cores x cpuSpeed x cpuShare/1024 (hosts that report no cpuSpeed are not bounded).",
        minimum=0.01,
    )
    minimal_vm_memory: int = option(
        "minimalVmMemory",
        0,
        "MB a VM is counted as at least, when capacity is planned (SLA@SOI; 0: its memory).",
        minimum=0,
    )
    optimal_consolidation: bool = option(
        "optimalConsolidation",
        False,
        "consolidated: place larger VMs first within a priority (first-fit decreasing).",
    )
    reschedule_after_start: bool = option(
        "rescheduleAfterStart",
        False,
        "balanced: when nothing waits, live-migrate one VM per round from the most to the least"
        " loaded host if that narrows the gap.",
    )
    auto_migrations: bool = option(
        "autoMigrations",
        False,
        "consolidated: when nothing waits, live-migrate the VMs of the least loaded host onto"
        " busier hosts when they all fit, so that it can be freed.",
    )
    high_priority: int = option(
        "highPriority",
        1,
        "Users with at least this priority (registerUser --priority) get the best [Servers]"
        " first; the others the worst first.",
    )


@dataclass(frozen=True, slots=True)
class PrimitiveSettings:
    SECTION: ClassVar[str] = "Primitive"
    DOC: ClassVar[str] = (
        "The original scheduler's section, still read: densePack for the primitive policy, and"
        " hook1, hook2, ... (added after [Scheduler]'s)."
    )
    OPEN_OPTIONS: ClassVar[str] = r"hook\d+"

    dense_pack: bool = option(
        "densePack",
        False,
        "primitive: put a VM on the usable host with the most VMs that fits it (default: the"
        " fewest). The hint densePack overrides it per VM.",
    )
    schedule_delay: float = option(
        "scheduleDelay",
        0.0,
        "The original's name for [Scheduler] scheduleDelay; used when above 0.",
        minimum=0,
    )


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    SECTION: ClassVar[str] = "Logging"
    DOC: ClassVar[str] = "Log output of the daemons (to standard error), and the logs they keep."

    level: str = option("level", "INFO", "DEBUG, INFO, WARNING or ERROR.")
    json: bool = option("json", False, "One JSON object per line instead of plain text.")
    max_log_size: int = option(
        "maxLogSize",
        4_194_304,
        "Bytes a log file the node manager keeps may hold (its VMs' console and qemu logs, its"
        " watchdog's): past it, checked every 10 s, the file's newest this many bytes move to"
        " <file>.1 and the file starts again.",
        minimum=65536,
    )


@dataclass(frozen=True, slots=True)
class NodeManagerSettings:
    SECTION: ClassVar[str] = "NodeManager"
    DOC: ClassVar[str] = "The node manager's plug-ins and local files (one node manager per host)."

    network: str = option(
        "network",
        "bridge",
        "Network driver for the NICs of VMs: bridge (see [Bridge]: a bridge per network id, or"
        " the qemu-ifup.<networkId> script where present), vxlan (see [Vxlan]: a bridge and a"
        " VXLAN device per network id, one L2 segment across hosts), or fake (tests only).",
    )
    vmm: str = option(
        "vmm",
        "qemu",
        "Virtual machine monitor driver: qemu (see [Qemu]), or fake (tests and simulations"
        " only: no VM runs).",
    )
    scratch_dir: Path = option(
        "scratchDir",
        Path("/var/lib/tashi-nm/scratch"),
        "Local directory for the copy-on-write overlays of non-persistent disks, one"
        " subdirectory per instance, deleted when the VM ends. Not /tmp: the overlays hold"
        " the VMs' writes.",
    )
    cores: int = option(
        "cores",
        0,
        "Cores this host offers to VMs, whatever the VMM driver measures. 0: measured (qemu:"
        " the machine's processors).",
        minimum=0,
    )
    memory: int = option(
        "memory",
        0,
        "Memory (MB) this host offers to VMs, whatever the VMM driver measures. 0: measured"
        " (qemu: the machine's memory less [Qemu] reservedMem).",
        minimum=0,
    )


@dataclass(frozen=True, slots=True)
class NodeManagerServiceSettings:
    SECTION: ClassVar[str] = "NodeManagerService"
    DOC: ClassVar[str] = "The node manager's own API, and how it finds its cluster manager."

    host: str = option(
        "host",
        "0.0.0.0",
        "Address the node API listens on. Every call but /health needs the secret this node"
        " manager gave its cluster manager when it registered.",
    )
    port: int = option("port", 9883, "TCP port of the node API.", minimum=1, maximum=65535)
    name: str = option(
        "name", "", "This host's name in the cluster. Empty: the machine's host name."
    )
    advertise: str = option(
        "advertise",
        "",
        "Base URL the cluster manager uses to reach this node manager. Empty:"
        " http://<name>:<port>.",
    )
    cluster_manager_host: str = option(
        "clusterManagerHost", "localhost", "Where the cluster manager runs."
    )
    cluster_manager_port: int = option(
        "clusterManagerPort", 9882, "The cluster manager's port.", minimum=1, maximum=65535
    )
    register_frequency: float = option(
        "registerFrequency",
        2.0,
        "Seconds between two heartbeats to the cluster manager (each carries the state of"
        " every VM on this host).",
        minimum=0.1,
    )
    state_dir: Path = option(
        "stateDir",
        Path("/var/lib/tashi-nm"),
        "Directory of the node manager's own files: one subdirectory per VM (its sockets,"
        " serial log and state file), kept across restarts so running VMs are re-attached.",
    )
    max_request_body: int = _max_request_body()
    request_head_timeout: float = _request_head_timeout()
    request_body_timeout: float = _request_body_timeout()
    max_connections: int = _max_connections()


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


@dataclass(frozen=True, slots=True)
class QemuSettings:
    SECTION: ClassVar[str] = "Qemu"
    DOC: ClassVar[str] = (
        "The QEMU driver of the node manager: VMs as daemonized qemu processes driven through"
        " QMP on a Unix socket each (see docs/adr/0006-qemu-driver.md)."
    )

    qemu_bin: Path = option(
        "qemuBin", Path("/usr/bin/qemu-system-x86_64"), "The QEMU system emulator to run."
    )
    accel: str = option(
        "accel",
        "auto",
        "auto, kvm or tcg. auto boots a Linux kernel under KVM once at start-up (within"
        " kvmProbeTimeout) and uses KVM only if it works, TCG otherwise.",
    )
    kvm_probe_timeout: float = option(
        "kvmProbeTimeout",
        5.0,
        "Seconds the KVM probe waits for its kernel to boot as far as looking for its root"
        " file system.",
        minimum=0.5,
    )
    probe_kernel: str = option(
        "probeKernel",
        "",
        "Linux kernel the KVM probe boots. Empty: the first <image>.kernel direct-boot sidecar"
        " in the image store; without any, a tiny built-in 64-bit stub (a weaker test).",
    )
    machine: str = option("machine", "pc", "QEMU machine type (-M).")
    reserved_mem: int = option(
        "reservedMem", 512, "Memory (MB) of the host kept from VMs.", minimum=0
    )
    monitor_timeout: float = option(
        "monitorTimeout", 30.0, "Seconds to wait for one QMP command to answer.", minimum=0.1
    )
    launch_timeout: float = option(
        "launchTimeout",
        60.0,
        "Seconds qemu may take to start (open its disks and sockets) before it is killed.",
        minimum=1,
    )
    migrate_timeout: float = option(
        "migrateTimeout",
        300.0,
        "Seconds a live migration, a suspend or a restore may take before it is given up (the VM"
        " then keeps running where it was).",
        minimum=1,
    )
    max_parallel_migrations: int = option(
        "maxParallelMigrations",
        10,
        "Most outgoing live migrations and suspends at once; more wait their turn.",
        minimum=1,
    )
    migrate_bandwidth: int = option(
        "migrateBandwidth",
        1024,
        "Bandwidth cap (MB/s) of a live migration or suspend (the original set 1g).",
        minimum=1,
    )
    shutdown_grace: float = option(
        "shutdownGrace",
        60.0,
        "Seconds a guest has to power off after shutdownVm before the node manager destroys it.",
        minimum=0,
    )
    suspend_compression: str = option(
        "suspendCompression",
        "gzip",
        "gzip (a gzip -1 child compresses the saved state; no shell is ever run) or none.",
    )
    use_cgroups: bool = option(
        "useCgroups",
        True,
        "Put each VM in its own cgroup (v1 cpu controller) so cpuShare sets its cpu.shares."
        " Without usable cgroups the node manager cannot change CPU shares and says so.",
    )
    cgroup_root: Path = option(
        "cgroupRoot",
        Path("/sys/fs/cgroup/cpu/tashi"),
        "Parent cgroup of the VMs' groups (created when missing).",
    )
    boot_slots: str = option(
        "bootSlots",
        "auto",
        "Most guests of this machine booting at once (see docs/adr/0011-boot-slots.md): auto"
        " (two per processor), off, or a number. A VM started while all are taken is made with"
        " its CPUs stopped and runs when one frees; it holds its slot until its qemu uses under"
        " a quarter of a core or bootHold passes. Node managers sharing bootSlotDir share them.",
    )
    boot_slot_dir: Path = option(
        "bootSlotDir",
        Path("/run/tashi/boot-slots"),
        "Directory of the boot slots' lock files: one per machine, whatever number of node"
        " managers run on it.",
    )
    boot_hold: float = option(
        "bootHold",
        30.0,
        "Seconds a booting VM holds its boot slot at most, however busy it stays.",
        minimum=0.5,
    )
    vnc_host: str = option(
        "vncHost",
        "",
        "Address startVnc opens a VNC port on (a free port, one-time password). Empty: VNC"
        " stays on the VM's Unix socket, reachable only by root on the host (ssh -L).",
    )
    vnc_password_lifetime: float = option(
        "vncPasswordLifetime",
        120.0,
        "Seconds the one-time VNC password of startVnc stays valid for a new connection.",
        minimum=1,
    )


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
    max_log_size: int = option(
        "maxLogSize",
        4_194_304,
        "[Logging] maxLogSize of the hosts, and the cap of the cluster's other logs (the"
        " daemons', dnsmasq's): past it a log's newest this many bytes move to <log>.1.",
        minimum=65536,
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of one program, parsed once at start-up."""

    cluster_manager: ClusterManagerSettings = field(default_factory=ClusterManagerSettings)
    cluster_manager_service: ClusterManagerServiceSettings = field(
        default_factory=ClusterManagerServiceSettings
    )
    sql: SqlSettings = field(default_factory=SqlSettings)
    vfs: VfsSettings = field(default_factory=VfsSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    access_cluster_manager: AccessClusterManagerSettings = field(
        default_factory=AccessClusterManagerSettings
    )
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    primitive: PrimitiveSettings = field(default_factory=PrimitiveSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    node_manager: NodeManagerSettings = field(default_factory=NodeManagerSettings)
    node_manager_service: NodeManagerServiceSettings = field(
        default_factory=NodeManagerServiceSettings
    )
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    vxlan: VxlanSettings = field(default_factory=VxlanSettings)
    dhcp_dns: DhcpDnsSettings = field(default_factory=DhcpDnsSettings)
    qemu: QemuSettings = field(default_factory=QemuSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
