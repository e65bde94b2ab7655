"""End-to-end boot on a virtual cluster: ``createVm`` to the guest's console markers, against a
bare ``qemu`` of the same image in the same run (``python -m bench e2eboot``).

The system under test is a real ``tashi-cluster`` (``tashi.devcluster``: hosts are network
namespaces with their own ``tashi-nm``, the cluster manager, ``tashi-scheduler`` with the DhcpDns
hook and one dnsmasq per VM network in the cluster manager's namespace, VM networks over VXLAN),
started here with its own state directory in the run's workspace and a fabric subnet nobody
routes, and stopped at the end (``VirtualCluster.stop`` then checks that no namespace, link,
process or file of it is left).

Tashi's side: the SDK's ``create_vm`` (``TashiClient.create_vm``: the request the ``tashi
createVm`` command sends, without the command's Python start-up) of a 1-core VM with the tiny
guest and one NIC on network 1; the clock runs from the request until ``TASHI-GUEST-UP`` and
``TASHI-GUEST-DHCP`` appear in the serial log on whichever host the scheduler chose. That covers
the scheduler noticing the instance, the DhcpDns hook's address and static lease, ``activateVm``,
the node manager's tap on the VXLAN bridge and qemu, the guest's boot and its DHCP exchange with
the cluster's dnsmasq across VXLAN.

The bare side: the argv the node manager really ran (``/proc/<pid>/cmdline`` of a warm-up Tashi
VM; same kernel, initrd, command line, memory, cores, devices), with the VM's own files moved
(``bareqemu.retarget``) and its NIC on a tap of a bridge in a namespace of the benchmark's own,
where a dnsmasq started like the cluster's (static range, a static lease for the bare VM's MAC)
answers. It is launched through ``nsenter`` into that namespace and timed from the launch to the
same two markers. Tashi and bare boots alternate, and every VM of either side keeps running
until the end (so the two sides boot beside the same number of idle guests); the bare ones are
stopped through a pidfd, Tashi's with the cluster.

All VMs of either side are on one network, as a cluster's VMs are. The warm-up starts one
Tashi VM on every host (``targetHost``), so each node manager has made that network's bridge
and VXLAN device before the timed boots, which are placed wherever the scheduler likes: a
network is made once per host, not once per VM. (Until this run's revision each Tashi boot had
a network of its own, to stay clear of a dnsmasq crash that ``ea59928`` fixed; each boot then
paid for making a network too.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.bareqemu import BareVm, Template, alive, cmdline
from bench.cluster import BenchError, Workspace
from bench.neighbours import Neighbours, cores
from bench.nodecluster import REPO, tiny_image
from bench.report import RESULTS_DIR, machine, source, table
from tashi.api.schemas import DiskIn, InstanceIn, NicIn
from tashi.client.sdk import TashiClient
from tashi.config.cluster import ClusterSettings
from tashi.devcluster import fabric
from tashi.devcluster.cluster import DevCluster
from tashi.devcluster.fabric import Fabric
from tashi.devcluster.state import State, host_name
from tashi.domain.errors import TashiError
from tashi.images.markers import DHCP, UP

Say = Callable[[str], None]
BOOT_TIMEOUT = 120.0
GONE_TIMEOUT = 60.0
LEASE_TIMEOUT = 12.0  # seconds after UP a lease may take (the guest's udhcpc gets one in < 1)
POLL = 0.01  # seconds between looks at the serial logs of one VM
GOAL_RATIO = 1.05
# Fabric subnets tried in turn (the first the root namespace does not route yet): not the
# default 198.18.0.0/20, so a developer's own tashi-cluster may run beside the benchmark.
FABRICS = ("198.18.96.0/20", "198.18.112.0/20", "198.18.128.0/20", "198.18.144.0/20")
BARE_SUBNET = ipaddress.IPv4Network("198.19.254.0/24")  # inside the benchmark's own namespace


@dataclass(frozen=True, slots=True)
class E2ePlan:
    """``FULL`` for docs/benchmarks.md, ``QUICK`` to smoke."""

    hosts: int
    pairs: int
    memory_mb: int
    quiet_wait: float  # seconds one boot may wait for quiet neighbours


FULL = E2ePlan(hosts=3, pairs=10, memory_mb=128, quiet_wait=10.0)
QUICK = E2ePlan(hosts=2, pairs=2, memory_mb=128, quiet_wait=2.0)


# --- the virtual cluster -----------------------------------------------------------------------


def free_fabric() -> str:
    for candidate in FABRICS:
        if not fabric.overlapping_routes(ipaddress.IPv4Network(candidate)):
            return candidate
    raise BenchError(f"every fabric the benchmark may use is routed already: {FABRICS}")


@dataclass
class VirtualCluster:
    """A ``tashi-cluster`` of the benchmark's own (``DevCluster`` with its own state dir)."""

    cluster: DevCluster
    state: State
    admin: TashiClient
    image: str  # the guest's name in the image store

    @classmethod
    def start(
        cls,
        workspace: Workspace,
        hosts: int,
        say: Say,
        *,
        host_cores: int = 4,
        host_memory: int = 2048,
        cpu_over_rate: float = 4.0,
        networks: int = 2,
        lease: float | None = None,
        heartbeat: float | None = None,
    ) -> VirtualCluster:
        """``lease``: the cluster manager's expireHostTime and hostLeaseTime (``lease`` + 1),
        instead of tashi-cluster's 5 and 6 s; ``heartbeat``: the node managers'
        registerFrequency instead of tashi-cluster's 1 s."""
        image = tiny_image(say)
        settings = dataclasses.replace(
            ClusterSettings(),
            state_dir=workspace.root / "cluster",
            image=image,
            fabric=free_fabric(),
            host_cores=host_cores,
            host_memory=host_memory,
            cpu_cores_over_rate=cpu_over_rate,
            networks=" ".join(str(n) for n in range(1, networks + 1)),
        )
        if lease is not None:
            settings = dataclasses.replace(
                settings, expire_host_time=lease, host_lease_time=lease + 1
            )
        if heartbeat is not None:
            settings = dataclasses.replace(settings, heartbeat=heartbeat)
        cluster = DevCluster(settings, say=lambda text: say(f"[cluster] {text}"))
        began = time.monotonic()
        try:
            state = cluster.start(hosts)
            admin = cluster.admin(state)
        except BaseException:
            left = cluster.stop()
            if left:
                say(f"[cluster] left behind after a failed start: {left}")
            raise
        say(
            f"[cluster] {state.tag}: {hosts} host(s) up in {time.monotonic() - began:.1f} s"
            f" (fabric {settings.fabric}, state {settings.state_dir})"
        )
        return cls(cluster, state, admin, image.name)

    @property
    def hosts(self) -> list[int]:
        return sorted(self.state.hosts)

    def vm_dir(self, instance_id: int) -> Path | None:
        """The VM's state directory on whichever host runs it (None: no host has it yet)."""
        for number in self.hosts:
            path = self.cluster.layout.host(number) / "state" / "vms" / str(instance_id)
            if path.is_dir():
                return path
        return None

    def host_root(self, vm_dir: Path) -> Path:
        return vm_dir.parents[2]  # <host>/state/vms/<id>

    def wait_gone(self, ids: Iterable[int], timeout: float = GONE_TIMEOUT) -> None:
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while wanted & {i.id for i in self.admin.get_instances()}:
            if time.monotonic() > deadline:
                raise BenchError(f"instances {sorted(wanted)} not gone after {timeout:.0f} s")
            time.sleep(0.1)

    def keep_logs(self, target: Path) -> Path:
        """Copy the cluster's logs (daemons, dnsmasq, VM consoles) out of its state directory,
        which ``stop`` removes (``--keep`` keeps the workspace)."""
        root = self.cluster.layout.root
        for path in root.rglob("*.log"):
            copy = target / path.relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        return target

    def stop(self) -> list[str]:
        """Stop the cluster (``DevCluster.stop``) and check that nothing of it is left."""
        with contextlib.suppress(Exception):  # closing a client must not stop the clean-up
            self.admin.close()
        left = self.cluster.stop()
        left += Fabric(fabric_plan(self.state)).leftovers()
        if Path(self.state.cgroup).exists():
            left.append(f"cgroup {self.state.cgroup}")
        if self.cluster.layout.root.exists():
            left.append(f"{self.cluster.layout.root} still exists")
        return left


def fabric_plan(state: State) -> fabric.Plan:
    return fabric.Plan(state.tag, ipaddress.IPv4Network(state.fabric))


# --- serial logs -------------------------------------------------------------------------------


@dataclass
class Console:
    """The markers seen so far in one serial log, read incrementally."""

    path: Path
    seen: dict[str, float] = field(default_factory=dict)  # marker -> time.monotonic()
    _offset: int = 0
    _tail: bytes = b""
    _inode: int = -1

    def poll(self, markers: tuple[str, ...]) -> None:
        try:
            with self.path.open("rb") as log:
                identity = os.fstat(log.fileno())
                if identity.st_ino != self._inode or identity.st_size < self._offset:
                    # A new file (the VM started again, e.g. after an activation that timed
                    # out): read it from its start.
                    self._inode, self._offset, self._tail = identity.st_ino, 0, b""
                log.seek(self._offset)
                chunk = log.read()
        except FileNotFoundError:
            return
        if not chunk:
            return
        now = time.monotonic()
        self._offset += len(chunk)
        text = self._tail + chunk
        for marker in markers:
            if marker not in self.seen and marker.encode() in text:
                self.seen[marker] = now
        self._tail = text[-64:]

    def done(self, markers: tuple[str, ...]) -> bool:
        return all(m in self.seen for m in markers)


def watch(
    console: Callable[[], Console | None],
    markers: tuple[str, ...],
    timeout: float,
    running: Callable[[], bool],
) -> Console:
    """Poll until ``markers`` all appeared in the console ``console()`` finds (None: not yet)."""
    deadline = time.monotonic() + timeout
    found: Console | None = None
    while True:
        if found is None:
            found = console()
        if found is not None:
            found.poll(markers)
            if found.done(markers):
                return found
        if not running():
            raise BenchError(f"the VM ended before printing {markers} ({found})")
        if time.monotonic() > deadline:
            raise BenchError(f"no {markers} after {timeout:.0f} s ({found})")
        time.sleep(POLL)


# --- the bare side's network -------------------------------------------------------------------


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class BareNet:
    """A namespace of the benchmark's own with a bridge, one tap per bare VM slot, and a
    dnsmasq started as the cluster's are (static range, a static lease per bare MAC)."""

    netns: str
    directory: Path
    macs: list[str]
    taps: list[str]
    dnsmasq: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, directory: Path, slots: int, say: Say) -> BareNet:
        netns = f"tbench-{secrets.token_hex(3)}"
        macs = [f"52:54:00:fe:{n // 256:02x}:{n % 256:02x}" for n in range(slots)]
        taps = [f"tb{n}" for n in range(slots)]
        net = cls(netns, directory, macs, taps)
        try:
            net._build()
        except BaseException:
            net.stop()
            raise
        say(f"[bare] namespace {netns}: bridge, {slots} tap(s), dnsmasq pid {net.pid}")
        return net

    @property
    def pid(self) -> int | None:
        return self.dnsmasq.pid if self.dnsmasq is not None else None

    def _build(self) -> None:
        ip("netns", "add", self.netns)
        ip("-n", self.netns, "link", "set", "lo", "up")
        ip("-n", self.netns, "link", "add", "br0", "type", "bridge")
        gateway = f"{BARE_SUBNET.network_address + 1}/{BARE_SUBNET.prefixlen}"
        ip("-n", self.netns, "addr", "add", gateway, "dev", "br0")
        ip("-n", self.netns, "link", "set", "br0", "up")
        for tap in self.taps:
            ip("-n", self.netns, "tuntap", "add", "dev", tap, "mode", "tap")
            ip("-n", self.netns, "link", "set", tap, "master", "br0", "up")
        hosts = self.directory / "dhcp-hosts"
        hosts.write_text(
            "".join(
                f"{mac},{BARE_SUBNET.network_address + 10 + n},bare{n}\n"
                for n, mac in enumerate(self.macs)
            )
        )
        pid_file = self.directory / "dnsmasq.pid"
        net = BARE_SUBNET
        argv = ["nsenter", f"--net=/run/netns/{self.netns}", "/usr/sbin/dnsmasq"]
        argv += ["--keep-in-foreground", "--conf-file=/dev/null", f"--pid-file={pid_file}"]
        argv += ["--interface=br0", "--except-interface=lo", "--bind-dynamic", "--user=root"]
        argv += ["--no-resolv", "--no-hosts", f"--dhcp-hostsfile={hosts}"]
        argv += [f"--dhcp-range={net.network_address},static,{net.netmask},1h"]
        argv += [f"--dhcp-leasefile={self.directory / 'leases'}", "--dhcp-authoritative"]
        argv += ["--domain=bare.test", f"--log-facility={self.directory / 'dnsmasq.log'}"]
        argv += ["--log-dhcp"]
        self.dnsmasq = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10.0
        while not (pid_file.exists() and pid_file.read_text().strip() == str(self.dnsmasq.pid)):
            if self.dnsmasq.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the bare side's dnsmasq did not start ({argv})")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.send_signal(signal.SIGTERM)
            try:
                self.dnsmasq.wait(10.0)
            except subprocess.TimeoutExpired:
                self.dnsmasq.kill()
                self.dnsmasq.wait(10.0)
        if self.netns in fabric.namespaces():
            subprocess.run(["ip", "netns", "del", self.netns], check=False)


def bare_argv(argv: list[str], netns: str, tap: str, mac: str) -> list[str]:
    """The Tashi VM's argv with its (single) NIC moved to ``tap``/``mac``, run in ``netns``."""
    out = []
    for arg in argv:
        if arg.startswith("tap,id=net0,"):
            parts = [f"ifname={tap}" if p.startswith("ifname=") else p for p in arg.split(",")]
            arg = ",".join(parts)
        elif ",netdev=net0," in arg:
            parts = [f"mac={mac}" if p.startswith("mac=") else p for p in arg.split(",")]
            arg = ",".join(parts)
        out.append(arg)
    return ["nsenter", f"--net=/run/netns/{netns}", *out]


# --- the measurement ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class E2eSample:
    kind: str  # "tashi" or "bare"
    up: float  # seconds from createVm sent / launch to TASHI-GUEST-UP
    dhcp: float | None  # ... to TASHI-GUEST-DHCP (None: no lease within LEASE_TIMEOUT)
    answered: float  # createVm answered / the -daemonize launcher returned
    forked: float | None  # the qemu process created (its /proc start time, 10 ms ticks)
    neighbours: float  # cores other processes used meanwhile


@dataclass
class E2eResults:
    samples: list[E2eSample] = field(default_factory=list)
    tashi_argv: list[str] = field(default_factory=list)
    bare_argv: list[str] = field(default_factory=list)
    cluster: dict[str, Any] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[E2eSample]:
        return [s for s in self.samples if s.kind == kind]


_TICKS = os.sysconf("SC_CLK_TCK")


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _forked(pid: int, booted: float) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19]) / _TICKS - booted


def _up_then_lease(
    console: Callable[[], Console | None], running: Callable[[], bool]
) -> dict[str, float]:
    """The times of UP (required) and of DHCP (None when no lease came within LEASE_TIMEOUT of
    UP: recorded, not fatal, so one lost lease does not void the run's boot figures)."""
    found = watch(console, (UP,), BOOT_TIMEOUT, running)
    with contextlib.suppress(BenchError):
        watch(lambda: found, (DHCP,), LEASE_TIMEOUT, running)
    return dict(found.seen)


def _qemu_pid(vm_dir: Path) -> int | None:
    try:
        return int((vm_dir / "qemu.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class E2eBench:
    vc: VirtualCluster
    net: BareNet
    neighbours: Neighbours
    directory: Path
    plan: E2ePlan
    say: Say
    results: E2eResults = field(default_factory=E2eResults)
    running: list[BareVm] = field(default_factory=list)
    _count: int = 0

    def stop_bare(self) -> None:
        while self.running:
            self.running.pop().stop()

    def run(self) -> E2eResults:
        self.say(
            f"[e2eboot] warm-up: one Tashi VM on each of the {len(self.vc.hosts)} hosts,"
            " one bare qemu"
        )
        for number in self.vc.hosts:
            _, template = self._tashi(timed=False, target=host_name(number))
        self._bare(template, 0, timed=False)
        for n in range(self.plan.pairs):
            for kind in ("tashi", "bare"):
                tashi = kind == "tashi"
                sample = self._tashi()[0] if tashi else self._bare(template, n + 1)
                self.results.samples.append(sample)
                dhcp = "none" if sample.dhcp is None else f"{sample.dhcp:.2f} s"
                self.say(
                    f"[e2eboot] {n + 1}/{self.plan.pairs} {kind}: up {sample.up:.2f} s,"
                    f" dhcp {dhcp} (answered {sample.answered:.3f} s, qemu forked"
                    f" {sample.forked if sample.forked is None else round(sample.forked, 2)} s,"
                    f" neighbours {sample.neighbours:.2f} cores)"
                )
        return self.results

    def _quiet(self) -> None:
        self.neighbours.wait_quiet(self.plan.quiet_wait, 0.25)

    def _tashi(
        self, *, timed: bool = True, target: str | None = None
    ) -> tuple[E2eSample, Template]:
        self._count += 1
        vc = self.vc
        request = InstanceIn(
            name=f"e2e-{self._count}",
            memory=self.plan.memory_mb,
            disks=[DiskIn(uri=vc.image)],
            nics=[NicIn(network=vc.state.networks[0])],
            hints={} if target is None else {"targetHost": target},
        )
        if timed:
            self._quiet()
        before, booted, t0 = self.neighbours.snapshot(), _boottime(), time.monotonic()
        inst = vc.admin.create_vm(request)
        answered = time.monotonic() - t0
        box: dict[str, Path] = {}

        def console() -> Console | None:
            found = vc.vm_dir(inst.id)
            if found is None:
                return None
            box["dir"] = found
            return Console(found / "console.log")

        def running() -> bool:
            if "dir" not in box:
                return True  # not started yet: the deadline decides
            pid = _qemu_pid(box["dir"])
            return pid is None or alive(pid)

        seen = _up_then_lease(console, running)
        after = self.neighbours.snapshot()
        vm_dir = box["dir"]
        pid = _qemu_pid(vm_dir)
        if pid is None:
            raise BenchError(f"no qemu pid in {vm_dir}")
        forked = _forked(pid, booted)
        argv = cmdline(pid)
        self.results.tashi_argv = argv
        host = vc.host_root(vm_dir)
        template = Template(
            argv,
            vm_dir,
            host / "scratch" / str(inst.id) / "disk0.qcow2",
            vc.cluster.layout.vfs / "images" / vc.image,
            host,
        )
        # The VM keeps running (as each bare one does) until the cluster stops: destroying it
        # makes the DhcpDns hook withdraw its lease, and dnsmasq 2.90 dies (SIGSEGV) at that
        # reload, so the next VM would get no lease.
        dhcp = seen[DHCP] - t0 if DHCP in seen else None
        sample = E2eSample("tashi", seen[UP] - t0, dhcp, answered, forked, cores(before, after))
        return sample, template

    def _bare(self, template: Template, slot: int, *, timed: bool = True) -> E2eSample:
        self._count += 1
        vm = BareVm.prepare(self.directory / f"bare-{self._count}", template)
        vm.argv = bare_argv(vm.argv, self.net.netns, self.net.taps[slot], self.net.macs[slot])
        try:
            if timed:
                self._quiet()
            before, booted, t0 = self.neighbours.snapshot(), _boottime(), time.monotonic()
            vm.launch()
            answered = time.monotonic() - t0
            seen = _up_then_lease(lambda: Console(vm.paths.console), vm.running)
            after = self.neighbours.snapshot()
            assert vm.pid is not None
            forked = _forked(vm.pid, booted)
        except BaseException:
            vm.stop()
            raise
        self.running.append(vm)  # stopped at the end, as Tashi's VMs are
        self.results.bare_argv = vm.argv
        load = cores(before, after)
        dhcp = seen[DHCP] - t0 if DHCP in seen else None
        return E2eSample("bare", seen[UP] - t0, dhcp, answered, forked, load)


# --- report ------------------------------------------------------------------------------------


def nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = max(0, -(-len(ordered) * pct // 100) - 1)
    return ordered[int(index)]


def rows(results: E2eResults) -> list[list[str]]:
    tashi, bare = results.of("tashi"), results.of("bare")
    out: list[list[str]] = []
    if not tashi or not bare:
        return out
    for label, attr in (
        ("createVm -> TASHI-GUEST-UP", "up"),
        ("createVm -> TASHI-GUEST-DHCP", "dhcp"),
        ("createVm answered / launcher returned", "answered"),
        ("qemu process forked", "forked"),
    ):
        t_values = [getattr(s, attr) for s in tashi if getattr(s, attr) is not None]
        b_values = [getattr(s, attr) for s in bare if getattr(s, attr) is not None]
        if not t_values or not b_values:
            out.append([f"{label}", "-", "-", "-", "FAIL: none measured"])
            continue
        for stat in (50, 90):
            t = nearest_rank(t_values, stat)
            b = nearest_rank(b_values, stat)
            name = "median" if stat == 50 else "p90"
            goal = ""
            if stat == 50 and attr in ("up", "dhcp"):
                goal = f"{'PASS' if t / b <= GOAL_RATIO else 'FAIL'} <= {GOAL_RATIO:.2f}x"
            out.append([f"{label} {name}", f"{t:.3f} s", f"{b:.3f} s", f"{t / b:.2f}x", goal])
    leased = (
        f"{sum(s.dhcp is not None for s in tashi)}/{len(tashi)}",
        f"{sum(s.dhcp is not None for s in bare)}/{len(bare)}",
    )
    out.append(["boots with a lease", *leased, "", ""])
    return out


HEADER = ["metric", "tashi", "bare qemu", "ratio", "goal"]


def save(name: str, document: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    finished = datetime.now().astimezone()
    full = {
        "finished": finished.isoformat(timespec="seconds"),
        "suite": name,
        "machine": machine(),
        "source": source(),
        **document,
    }
    path = RESULTS_DIR / f"{finished:%Y%m%d-%H%M%S}-{name}.json"
    path.write_text(json.dumps(full, indent=2, default=str) + "\n")
    return path


@contextlib.contextmanager
def sigterm_in_children_default() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the benchmark (``sigterm_as_interrupt``), but pyroute2
    forks helpers to open netlink sockets in a namespace and stops them with SIGTERM: a forked
    helper must die of it, not unwind the benchmark's own code."""
    main = os.getpid()
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def uptime() -> str:
    return Path("/proc/loadavg").read_text().strip()


def run(quick: bool, workspace: Workspace, say: Say) -> int:
    """The whole suite; the exit status (1: the goal missed or something failed)."""
    plan = QUICK if quick else FULL
    load_before = uptime()
    results = E2eResults()
    vc: VirtualCluster | None = None
    net: BareNet | None = None
    failed = ""
    try:
        vc = VirtualCluster.start(workspace, plan.hosts, say)
        results.cluster = {"tag": vc.state.tag, "fabric": vc.state.fabric, "hosts": plan.hosts}
        net = BareNet.start(workspace.subdir("barenet"), plan.pairs + 1, say)
        bench = E2eBench(vc, net, Neighbours(workspace.root), workspace.subdir("bare"), plan, say)
        bench.results = results
        try:
            bench.run()
        finally:
            bench.stop_bare()
    except (BenchError, TashiError) as exc:
        failed = str(exc)
        say(f"[e2eboot] FAILED: {exc}")
        if vc is not None:
            say(f"[e2eboot] the cluster's logs: {vc.keep_logs(workspace.root / 'logs')}")
    finally:
        if net is not None:
            net.stop()
            if net.netns in fabric.namespaces():
                results.left.append(f"namespace {net.netns}")
        if vc is not None:
            say("[e2eboot] stopping the cluster")
            results.left += vc.stop()
        results.left += [f"process {pid}" for pid in workspace.strays()]
    load_after = uptime()
    found = rows(results)
    print(table(found, HEADER))
    document = {
        "options": {"quick": quick, "plan": asdict(plan)},
        "loadavg": {"before": load_before, "after": load_after},
        "samples": [asdict(s) for s in results.samples],
        "tashi_argv": results.tashi_argv,
        "bare_argv": results.bare_argv,
        "cluster": results.cluster,
        "left_behind": results.left,
        "failed": failed,
        "rows": found,
    }
    path = save("e2eboot-quick" if quick else "e2eboot", document)
    print(f"\nload average before: {load_before}; after: {load_after}")
    if results.left:
        print(f"LEFT BEHIND: {results.left}")
    else:
        print("clean-up checked: no namespace, link, process or file of the run is left")
    print(f"measured: tashi {source()} (SDK create_vm); results: {path}")
    missed = any(r[4].startswith("FAIL") for r in found)
    return 1 if missed or failed or results.left or not found else 0


__all__ = ["REPO", "VirtualCluster", "run"]
