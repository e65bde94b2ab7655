"""The cluster manager's sections: its files, its API, its database, the shared store, security.

``[ClusterManager]``, ``[ClusterManagerService]`` (with the HTTP limits of ``limits.py``),
``[SQL]``, ``[Vfs]`` and ``[Security]``; gathered in ``settings.Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tashi.config import limits
from tashi.config.options import option


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
    max_request_body: int = limits.max_request_body()
    request_head_timeout: float = limits.request_head_timeout()
    request_body_timeout: float = limits.request_body_timeout()
    max_connections: int = limits.max_connections(10_000)
    max_requests: int = limits.max_requests()


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
    pool_size: int = option(
        "poolSize",
        8,
        "Database threads of the cluster manager that read, and at most as many that write"
        " (SQLite: one writer); each keeps its own connection open.",
        minimum=1,
    )


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
