"""The node manager's sections: ``[NodeManager]`` (its plug-ins and files),
``[NodeManagerService]`` (its API, with the HTTP limits of ``limits.py``, and its lease) and
``[Qemu]`` (the QEMU driver); gathered in ``settings.Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tashi.config import limits
from tashi.config.options import option


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
    metadata: bool = option(
        "metadata",
        True,
        "Serve instance metadata (EC2's http://169.254.169.254/, docs/node-manager.md) to the"
        " VMs on the taps the network driver makes: each guest sees only its own. Needs"
        " nftables (nft); without it the node manager logs why and runs VMs without metadata.",
    )
    metadata_tokens: str = option(
        "metadataTokens",
        "optional",
        "IMDSv2 session tokens: optional (a request without a token is answered, as EC2's"
        " default) or required (only requests bearing a token from PUT /latest/api/token).",
    )
    nocloud: bool = option(
        "nocloud",
        False,
        "Give every VM a NoCloud seed disk (a read-only ISO 9660 volume 'cidata' with its"
        " meta-data and user-data, after its own disks). The instance hint nocloud=true or"
        " nocloud=false decides for one VM. Needs genisoimage.",
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
    max_request_body: int = limits.max_request_body()
    request_head_timeout: float = limits.request_head_timeout()
    request_body_timeout: float = limits.request_body_timeout()
    max_connections: int = limits.max_connections()
    max_requests: int = limits.max_requests()


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
