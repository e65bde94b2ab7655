"""Start, extend, crash, inspect and stop a virtual cluster (the work behind ``tashi-cluster``).

``start`` makes the fabric (``fabric.py``), runs the cluster manager (and the scheduler, when it
is installed) in the cluster manager's namespace, defines the VM networks, gives that namespace a
leg on each of them (a VXLAN segment through the ``vxlan`` network driver), then starts one node
manager per host namespace, all at once, and waits until every host is up in the cluster
manager. Every daemon runs detached (a session of its own) with its log in the state directory;
the state file records each by pid and start time so later subcommands find them. The logs stay
bounded: the log keeper (``logkeeper.py``) caps them.

``crash`` is seed 002's ``ssi-rm``: every process in the host's namespace (its node manager,
its VMs' qemu and the node manager's watchdog) is SIGKILLed by pid; nobody is told. The
namespace stays (the host's kernel still runs, so connections to its node manager are refused
at once) until ``add`` boots it afresh. ``rm``/``add`` of a control-plane piece (``cm``,
``scheduler``, ``dnsmasq[:NET]``, ``nm:N``: ``targets.py``) crash one daemon and start it again
as it was (``control.py``). ``stop`` ends the daemons by pid (SIGTERM, SIGKILL after a
deadline), the watchdogs, then every process left in any namespace of the cluster's tag, then
removes namespaces, links, cgroups and files (the boot-slot directory of ``/run/tashi`` too:
``strays.py``): each wait has a deadline, so it never hangs.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tashi.api.schemas import HostOut, NetworkIn, UserIn
from tashi.client.sdk import TashiClient
from tashi.config.cluster import ClusterSettings
from tashi.config.network import VxlanSettings
from tashi.devcluster import (
    configs,
    control,
    dhcp,
    fabric,
    logkeeper,
    processes,
    strays,
    xmppsetup,
)
from tashi.devcluster.fabric import Fabric
from tashi.devcluster.state import Layout, State, host_name, host_number
from tashi.devcluster.targets import Kind, Target, in_start_order
from tashi.domain.errors import (
    BackendFailure,
    InsufficientResources,
    InvalidInput,
    InvalidState,
    TashiError,
)
from tashi.domain.ids import NetworkId
from tashi.guestimage import builder
from tashi.images import boot
from tashi.network.vxlan import VxlanDriver
from tashi.vmm.qemu import cgroups

Say = Callable[[str], None]
CGROUP_PARENT = Path("/sys/fs/cgroup/cpu")
CM_PORT = 9882
STOP_TIMEOUT = 10.0
DEFAULT_IMAGE = Path("var/images/tashi-tiny.qcow2")


@dataclass(frozen=True)
class HostStatus:
    number: int
    name: str
    nm: control.PieceStatus | None  # its node manager (None: none recorded, e.g. after rm N)
    up: bool | None  # as the cluster manager sees it (None: not registered, or no answer)
    state: str
    instances: list[str]


@dataclass(frozen=True)
class Status:
    pieces: list[control.PieceStatus]  # cm, scheduler, dnsmasqs, node managers (control.status)
    hosts: list[HostStatus]
    cm_problem: str | None  # why the cluster manager did not answer (None: it did)


def meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) // 1024  # kB -> MB
    return values


def check_memory(settings: ClusterSettings, new_hosts: int) -> None:
    """Refuse up front when the machine cannot give ``new_hosts`` more hosts their memory."""
    need = new_hosts * (settings.host_memory + configs.NM_OVERHEAD_MB)
    available = meminfo()["MemAvailable"]
    if need > available:
        raise InsufficientResources(
            f"{new_hosts} host(s) need {need} MB ({settings.host_memory} MB each for VMs, [Cluster]"
            f" hostMemory, plus {configs.NM_OVERHEAD_MB} MB for the node manager) but the"
            f" machine has {available} MB available: start fewer hosts or lower hostMemory in"
            " ~/.tashi/Cluster.cfg"
        )


class DevCluster:
    """One virtual cluster, found by its state directory."""

    def __init__(self, settings: ClusterSettings, say: Say = print) -> None:
        self.settings = settings
        self.layout = Layout(settings.state_dir.absolute())
        self.say = say

    # --- start ---------------------------------------------------------------------------------

    def start(self, hosts: int) -> State:
        if self.layout.state_file.exists():
            raise InvalidState(
                f"a cluster is already running from {self.layout.root}: `tashi-cluster add N` adds"
                " hosts, `tashi-cluster stop` stops it"
            )
        subnet = ipaddress.IPv4Network(self.settings.fabric)
        if fabric.overlapping_routes(subnet):
            raise InvalidState(
                f"the root namespace already has a route into {subnet} (another cluster?):"
                " choose another [Cluster] fabric in ~/.tashi/Cluster.cfg"
            )
        check_memory(self.settings, hosts)
        networks = self._networks()
        image = self._image()
        extra = self._extra_images()
        tag = secrets.token_hex(3)
        state = State(
            tag=tag,
            fabric=str(subnet),
            cm_port=CM_PORT,
            networks=networks,
            cgroup=str(CGROUP_PARENT / f"tashi-cluster-{tag}"),
        )
        self.layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.layout.save(state)  # from here on, stop can undo whatever follows
        self._install_image(image)
        for more in extra:
            self._install_image(more, overrides=False)
        Fabric(configs.plan(state)).build()
        if self.settings.xmpp:
            xmppsetup.start_server(self.settings, state, self.layout)
        self._start_cm(state)
        self.layout.save(state)
        logkeeper.start(self.settings, self.layout, state)
        self._prepare_cm(state)
        dhcp.start_servers(self.settings, self.layout, state)
        scheduler = self._start_scheduler(state)
        self._start_hosts(state, list(range(1, hosts + 1)))
        if scheduler is not None:
            scheduler.wait_healthy()
        if self.settings.xmpp:
            with self.admin(state) as admin:
                xmppsetup.start_daemon(self.settings, state, self.layout, admin).wait_healthy()
        return state

    def _networks(self) -> list[int]:
        try:
            ids = [int(word) for word in self.settings.networks.replace(",", " ").split()]
        except ValueError as exc:
            raise InvalidInput(f"[Cluster] networks = {self.settings.networks!r}: ids") from exc
        if not ids or any(not 1 <= i <= 255 for i in ids):
            raise InvalidInput("[Cluster] networks: one or more ids from 1 to 255")
        return ids

    def _image(self) -> Path:
        image = self.settings.image
        if image == DEFAULT_IMAGE and not builder.is_complete(image.absolute()):
            self.say(f"building the tiny guest image {image} (once)")
            builder.build(builder.BuildOptions(out_dir=image.absolute().parent), say=self.say)
        if not image.is_file():
            raise InvalidInput(f"[Cluster] image {image} does not exist")
        return image.absolute()

    def _extra_images(self) -> list[Path]:
        """[Cluster] images: the further images to put in the store, each an existing file."""
        found = []
        for word in self.settings.images.split(","):
            if not word.strip():
                continue
            path = Path(word.strip())
            if not path.is_file():
                raise InvalidInput(f"[Cluster] images: {path} does not exist")
            found.append(path.absolute())
        return found

    def _install_image(self, image: Path, *, overrides: bool = True) -> None:
        """The image and its boot sidecars into the cluster's image store (hard links where
        possible); [Cluster] kernel/initrd replace the sidecars of ``image`` (with
        ``overrides``)."""
        images = self.layout.vfs / "images"
        images.mkdir(parents=True, exist_ok=True)
        chosen = {".kernel": self.settings.kernel, ".initrd": self.settings.initrd}
        for suffix in ("", *boot.SIDECAR_SUFFIXES):
            override = chosen.get(suffix, "") if overrides else ""
            source = Path(override) if override else Path(f"{image}{suffix}")
            if not source.exists():
                continue
            target = images / f"{image.name}{suffix}"
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)

    def _start_cm(self, state: State) -> None:
        fab = configs.plan(state)
        root = self.layout.cm
        root.mkdir(parents=True, exist_ok=True)
        sections = configs.cm_config(self.settings, state, self.layout)
        sections.update(xmppsetup.cm_sections(self.settings, state, self.layout))
        path = processes.write_config(root / "cm.cfg", sections, private=True)
        cm = self._daemon("tashi-cm", root, path, fab.cm_ns, fab.cm_address, state.cm_port)
        state.daemons["tashi-cm"] = control.spawn(cm)
        cm.wait_healthy()

    def _start_scheduler(self, state: State) -> processes.Daemon | None:
        """``tashi-scheduler`` in the cluster manager's namespace (where its DHCP/DNS hook's
        dnsmasq must run: that namespace has a leg on every VM network)."""
        if not Path(processes.program("tashi-scheduler")).exists():
            self.say("tashi-scheduler is not installed: instances stay Pending (activateVm)")
            return None
        root = self.layout.scheduler
        root.mkdir(parents=True, exist_ok=True)
        sections = configs.agent_config(
            self.settings, state, self.layout, self.password(configs.AGENT_USER)
        )
        path = processes.write_config(root / "agent.cfg", sections, private=True)
        fab = configs.plan(state)
        daemon = self._daemon("tashi-scheduler", root, path, fab.cm_ns, fab.cm_address, 0)
        daemon.ready_log = "tashi-scheduler "
        state.daemons["tashi-scheduler"] = control.spawn(daemon)
        self.layout.save(state)
        return daemon

    def _daemon(
        self, name: str, root: Path, config: Path, netns: str, address: str, port: int
    ) -> processes.Daemon:
        return processes.Daemon(
            name,
            [processes.program(name.split(":")[0])],
            root,
            config,
            port,
            health_host=address,
            netns=netns,
            new_session=True,
            startup_timeout=self.settings.start_timeout,
        )

    def admin(self, state: State) -> TashiClient:
        parser = configparser.ConfigParser(interpolation=None)
        processes.wait_for("the admin credentials", self.layout.admin_credentials.exists, 30)
        parser.read(self.layout.admin_credentials)
        access = parser["AccessClusterManager"]
        url = f"http://{configs.plan(state).cm_address}:{state.cm_port}"
        return TashiClient(url, username=access["username"], password=access["password"])

    def _prepare_cm(self, state: State) -> None:
        """Users of the daemons, the networks, the client config, the services' network legs."""
        passwords = {configs.NODE_USER: secrets.token_urlsafe(16)}
        passwords[configs.AGENT_USER] = secrets.token_urlsafe(16)
        with self.admin(state) as admin:
            admin.register_user(
                UserIn(name=configs.NODE_USER, password=passwords[configs.NODE_USER], role="node")
            )
            admin.register_user(
                UserIn(
                    name=configs.AGENT_USER, password=passwords[configs.AGENT_USER], role="agent"
                )
            )
            for network_id in state.networks:
                admin.add_network(NetworkIn(id=network_id, name=f"net{network_id}"))
            access = configparser.ConfigParser(interpolation=None)
            access.read(self.layout.admin_credentials)
            creds = access["AccessClusterManager"]
            processes.write_config(
                self.layout.client_config,
                configs.client_config(state, creds["username"], creds["password"]),
                private=True,
            )
        (self.layout.root / "passwords").write_text(
            "".join(f"{user} {password}\n" for user, password in passwords.items())
        )
        (self.layout.root / "passwords").chmod(0o600)
        self._service_legs(state)

    def password(self, user: str) -> str:
        for line in (self.layout.root / "passwords").read_text().splitlines():
            name, _, password = line.partition(" ")
            if name == user:
                return password
        raise InvalidState(f"no password for {user} in {self.layout.root / 'passwords'}")

    def _service_legs(self, state: State) -> None:
        """The cluster manager's namespace joins every VM network (bridge + VXLAN, made by the
        vxlan driver) with address .1 of the network's /24."""
        fab = configs.plan(state)
        driver = self._vxlan(state)

        async def legs() -> None:
            for network_id in state.networks:
                await driver.ensure_network(NetworkId(network_id))
            await driver.set_peers(configs.host_addresses(state))
            # No close(): it would remove the networks, which have no VM tap here.

        asyncio.run(legs())
        for network_id in state.networks:
            address = configs.service_address(self.settings, network_id)
            fabric.add_address(fab.cm_ns, driver.bridge_name(NetworkId(network_id)), address, 24)

    def _vxlan(self, state: State) -> VxlanDriver:
        return VxlanDriver(VxlanSettings(underlay_device="eth0"), netns=configs.plan(state).cm_ns)

    # --- rm and add: hosts and control-plane pieces -----------------------------------------

    def rm(self, targets: list[Target]) -> None:
        """Crash each target (``targets.py``): control-plane pieces with ``control.crash``, then
        hosts with ``crash``. Every target is checked before anything is killed."""
        state = self.layout.load()
        pieces = [
            piece
            for target in targets
            if target.kind is not Kind.HOST
            for piece in control.resolve(state, target)
        ]
        for piece in dict.fromkeys(pieces):
            control.crash(state, piece, self.say)
            self.layout.save(state)
        hosts = [t.number for t in targets if t.kind is Kind.HOST and t.number is not None]
        if hosts:
            self.crash(list(dict.fromkeys(hosts)))

    def add_targets(self, targets: list[Target]) -> None:
        """Start each target: a control-plane piece again as it was (``control.restart``), hosts
        afresh (``add``); the cluster manager first, hosts last (``targets.in_start_order``).
        Every target is checked before anything starts."""
        state = self.layout.load()
        ordered = in_start_order(targets)
        pieces = {t: control.resolve(state, t) for t in ordered if t.kind is not Kind.HOST}
        hosts = [t.number for t in ordered if t.kind is Kind.HOST and t.number is not None]
        for target, found in pieces.items():
            for piece in found:
                if target.kind is Kind.DNSMASQ and piece.key is not None:
                    dhcp.prune_leases(self.settings, self.layout, state, piece.key)
                started = control.restart(state, piece, self.say, lambda: self.layout.save(state))
                if started and target.kind is Kind.NM:
                    assert piece.host is not None
                    self._wait_up(state, [piece.host])
        if hosts:
            self.add(hosts)

    def add(self, numbers: list[int]) -> list[int]:
        """Boot these hosts afresh (empty state); running ones are skipped with a note."""
        state = self.layout.load()
        new = []
        for number in numbers:
            proc = state.hosts.get(number)
            if proc is not None and processes.alive(proc.pid, proc.started):
                self.say(f"host {number} is already up: skipped")
            elif proc is not None and proc.crashed:
                raise InvalidState(
                    f"host {number}'s node manager was crashed alone (rm nm:{number}) and its VMs"
                    f" may still run: `add nm:{number}` starts it again; `rm {number}` crashes"
                    f" the whole host, which `add {number}` then boots afresh"
                )
            elif number not in new:
                new.append(number)
        if new:
            if _cm_down(state) is not None:
                raise InvalidState("the cluster manager is down: `add cm` starts it again first")
            check_memory(self.settings, len(new))
            self._start_hosts(state, new)
        return new

    def _start_hosts(self, state: State, numbers: list[int]) -> None:
        fab = Fabric(configs.plan(state))
        started: list[tuple[int, processes.Daemon]] = []
        # The cluster's cpu cgroup, parent of each node manager's [Qemu] cgroupRoot: without
        # it the node managers run their VMs without CPU shares.
        problem = cgroups.check(Path(state.cgroup))
        if problem is not None:
            self.say(f"VMs run without CPU shares: {problem}")
        for number in numbers:
            root = self.layout.host(number)
            shutil.rmtree(root, ignore_errors=True)  # a crashed host boots afresh
            root.mkdir(parents=True)
            if fab.plan.host_ns(number) in fabric.namespaces():  # crashed earlier (rm)
                kill_all(fab.plan.host_ns(number))
                fab.remove_host(number)
            netns = fab.add_host(number)
            sections = configs.nm_config(
                self.settings,
                state,
                self.layout,
                number,
                self.password(configs.NODE_USER),
            )
            config = processes.write_config(root / "nm.cfg", sections, private=True)
            address = configs.plan(state).host_address(number)
            nm = self._daemon("tashi-nm", root, config, netns, address, configs.NM_PORT)
            state.hosts[number] = control.spawn(nm)
            self.layout.save(state)
            started.append((number, nm))
        for _number, nm in started:
            nm.wait_healthy()
        self._refresh_peers(state)
        self._wait_up(state, [n for n, _ in started])

    def _wait_up(self, state: State, numbers: list[int]) -> None:
        """Until the cluster manager sees these hosts up (at once, with a note, when the
        cluster manager itself is down: a node manager started again waits for it)."""
        if _cm_down(state) is not None:
            self.say("the cluster manager is down: hosts register once it is started again")
            return
        with self.admin(state) as admin:
            names = {host_name(n) for n in numbers}
            processes.wait_for(
                f"hosts {', '.join(sorted(names))} to be up in the cluster manager",
                lambda: names <= {h.name for h in admin.get_hosts() if h.up},
                self.settings.start_timeout,
            )

    def _refresh_peers(self, state: State) -> None:
        """The cluster manager's side floods to every host started. The node managers need
        no help: they learn the other hosts from the cluster manager's heartbeat replies."""
        peers = configs.host_addresses(state)

        async def refresh(netns: str) -> None:
            await VxlanDriver(VxlanSettings(underlay_device="eth0"), netns=netns).set_peers(peers)

        cm_ns = configs.plan(state).cm_ns
        if cm_ns in fabric.namespaces():
            asyncio.run(refresh(cm_ns))

    def crash(self, numbers: list[int]) -> None:
        """SIGKILL every process of each host (node manager, VMs, the node manager's
        watchdog); tell nobody (the cluster manager finds out by the missing heartbeats)."""
        state = self.layout.load()
        fab = Fabric(configs.plan(state))
        for number in numbers:
            if number not in state.hosts:
                self.say(f"host {number} is not running: skipped")
                continue
            netns = fab.plan.host_ns(number)
            watchdog = strays.kill_watchdog(self.layout.nm_state(number))
            killed = kill_all(netns)
            if watchdog is not None and watchdog not in killed:
                killed.append(watchdog)
            self.say(f"host {number}: killed {len(killed)} process(es) ({netns})")
            # The namespace stays, like the host's kernel: its address refuses connections.
            remove_cgroup(Path(state.cgroup) / host_name(number))
            del state.hosts[number]
            self.layout.save(state)

    # --- status and console ----------------------------------------------------------------------

    def status(self) -> Status:
        """Each piece's process, and each host as its node manager and the cluster manager see
        it; when the cluster manager does not answer, the hosts as far as the state file
        knows them, and why."""
        state = self.layout.load()
        hosts: dict[str, HostOut] = {}
        by_host: dict[int, list[str]] = {}
        problem = _cm_down(state)
        try:
            if problem is None:
                with self.admin(state) as admin:
                    hosts = {h.name: h for h in admin.get_hosts()}
                    for inst in admin.get_instances():
                        if inst.hostId is not None:
                            by_host.setdefault(inst.hostId, []).append(f"{inst.name}({inst.state})")
        except TashiError as exc:
            problem = exc.message
        numbers = sorted(set(state.hosts) | {n for n in map(host_number, hosts) if n})
        result = []
        for number in numbers:
            host = hosts.get(host_name(number))
            result.append(
                HostStatus(
                    number=number,
                    name=host_name(number),
                    nm=control.nm_status(state, number),
                    up=host.up if host is not None else None,
                    state=host.state if host is not None else "-" if problem is None else "?",
                    instances=by_host.get(host.id, []) if host is not None else [],
                )
            )
        return Status(control.status(state), result, problem)

    def console_path(self, ref: str) -> Path:
        state = self.layout.load()
        with self.admin(state) as admin:
            inst = admin.get_instance(int(ref) if ref.isdigit() else ref)
            if inst.hostId is None:
                raise InvalidState(f"instance {inst.name} runs on no host ({inst.state})")
            number = host_number(admin.get_host(inst.hostId).name)
        if number is None:
            raise InvalidState(f"instance {inst.name} is on a host this cluster did not start")
        return self.layout.console(number, inst.id)

    # --- stop ------------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Take everything down; what could not be removed (empty: nothing is left)."""
        try:
            state = self.layout.load()
        except InvalidState:
            if self.layout.root.exists():
                shutil.rmtree(self.layout.root, ignore_errors=True)
            return []
        fab = Fabric(configs.plan(state))
        dnsmasqs = sorted(n for n in state.daemons if "dnsmasq" in n)
        order = ["tashi-xmpp", "tashi-scheduler", *dnsmasqs, "tashi-cm", "prosody", logkeeper.KEY]
        for name in order:
            proc = state.daemons.get(name)
            if proc is not None:
                processes.stop_pid(proc.pid, proc.started, timeout=STOP_TIMEOUT)
        processes.stop_pids(
            [(p.pid, p.started) for p in state.hosts.values()], timeout=STOP_TIMEOUT
        )
        for nm_state in sorted(self.layout.root.glob("hosts/host*/state")):  # crashed ones too
            strays.kill_watchdog(nm_state)
        for netns in fabric.namespaces():
            if netns.startswith(f"{fabric.PREFIX}{state.tag}-"):
                kill_all(netns)
        left = fab.destroy()
        left += remove_cgroup(Path(state.cgroup))
        left += strays.remove_boot_slots()
        for path in state.files:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.layout.root, ignore_errors=True)
        if self.layout.root.exists():
            left.append(f"{self.layout.root} could not be removed")
        return left


def _cm_down(state: State) -> str | None:
    """Why the cluster manager cannot answer, when its process is known to be down."""
    cm = state.daemons.get("tashi-cm")
    if cm is None or processes.alive(cm.pid, cm.started):
        return None
    return f"its process (pid {cm.pid}) is down" + (" (rm)" if cm.crashed else "")


def kill_all(netns: str, timeout: float = STOP_TIMEOUT) -> list[int]:
    """SIGKILL every process in namespace ``netns`` and wait (with a deadline) until the
    namespace has none left; the pids killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in fabric.processes_in(netns) if p != os.getpid()]
        if not pids:
            return killed
        for pid in pids:
            if pid not in killed:
                started = processes.start_time(pid)
                if started is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    killed.append(pid)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):  # reap it if it is our own child
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    raise BackendFailure(f"processes in {netns} survived SIGKILL for {timeout:.0f} s")


def remove_cgroup(root: Path, timeout: float = STOP_TIMEOUT) -> list[str]:
    """Remove a cgroup tree bottom-up; a killed qemu's threads may take a moment to leave."""
    if not root.exists():
        return []
    deadline = time.monotonic() + timeout
    groups = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    left = []
    for group in [*groups, root]:
        while True:
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    left.append(f"cannot remove cgroup {group}: {exc.strerror}")
                    break
                time.sleep(0.05)
    return left
