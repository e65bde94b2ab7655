"""The dnsmasq backend: one dnsmasq per network, fed by two files it re-reads on SIGHUP.

For network ``N`` the backend writes, in ``[DhcpDns] dnsmasqDir``:

* ``dhcp-hosts.N`` (dnsmasq ``--dhcp-hostsfile``): ``<mac>,<ip>,<name>`` per NIC, the static
  lease (dnsmasq hands ``<name>`` out as the host name, DHCP option 12). No ``set:`` tag: dnsmasq
  2.86 to 2.90 frees a host line's tags wrongly when it re-reads the file and crashes (segfault)
  at the first SIGHUP after such a host took its lease;
* ``addn-hosts.N`` (``--addn-hosts``): ``<ip> <fqdn> <name>`` per NIC, the DNS A record and the
  PTR dnsmasq derives from it;

each rewritten whole and atomically (a temporary file renamed over the old one, so dnsmasq never
reads half a file), then sends SIGHUP to the pid in the network's pid file (``dnsmasqPidFile``),
and ends (``dhcp_release``) every lease dnsmasq's lease file ``leases.N`` still holds for a NIC
that has no entry any more.
No pid file or no such process is only logged: the dnsmasq reads the files when it starts.

``reverseDns = False`` is refused: dnsmasq answers the PTR of every name it serves, from a hosts
file and from a DHCP lease alike (the name of a static lease goes into its DNS too), and has no
option that publishes an A record alone and is re-read on SIGHUP (``--address`` and ``--cname``
are read once at start, and ``--address`` also answers every subdomain).

Who runs the dnsmasq: ``DnsmasqServer`` below starts one for a network (the virtual cluster and
the tests do: ``start()``/``stop()`` by pid, in a network namespace if asked), with the options
that make it serve exactly these files and nothing else (static leases only, no upstream DNS, no
/etc/hosts, never on the loopback: so one per network can share a namespace, as libvirt's do).
A site with its own dnsmasq points its ``--dhcp-hostsfile``/``--addn-hosts`` at the
files and ``dnsmasqPidFile`` at its pid file instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from tashi.config.network import DhcpDnsSettings
from tashi.dhcpdns.backends.base import HostEntry, by_key
from tashi.domain.errors import BackendFailure, InvalidInput
from tashi.domain.ids import InstanceId, NetworkId

log = logging.getLogger(__name__)


def hosts_file(settings: DhcpDnsSettings, network_id: NetworkId) -> Path:
    return settings.dnsmasq_dir / f"dhcp-hosts.{network_id}"


def names_file(settings: DhcpDnsSettings, network_id: NetworkId) -> Path:
    return settings.dnsmasq_dir / f"addn-hosts.{network_id}"


def leases_file(settings: DhcpDnsSettings, network_id: NetworkId) -> Path:
    return settings.dnsmasq_dir / f"leases.{network_id}"


def pid_file(settings: DhcpDnsSettings, network_id: NetworkId) -> Path:
    pattern = settings.dnsmasq_pid_file
    name = pattern % network_id if "%s" in pattern else pattern
    return settings.dnsmasq_dir / name  # an absolute name stays what it is


class DnsmasqBackend:
    name = "dnsmasq"

    def __init__(self, settings: DhcpDnsSettings) -> None:
        if not settings.reverse_dns:
            raise InvalidInput(
                "[DhcpDns] reverseDns = False cannot be honoured with backend = dnsmasq: dnsmasq"
                " answers the PTR record of every name it publishes (hosts files and DHCP leases"
                " alike). Remove the option (PTR records are published) or use another backend."
            )
        self.settings = settings
        self._entries: dict[tuple[InstanceId, int], HostEntry] = {}
        self._lock = asyncio.Lock()

    async def replace_all(self, entries: Iterable[HostEntry]) -> None:
        new = by_key(entries)
        async with self._lock:
            networks = {e.network_id for e in (*self._entries.values(), *new.values())}
            networks |= self._networks_on_disk()
            gone = [e for k, e in self._entries.items() if k not in new]
            self._entries = new
            if gone:
                await asyncio.to_thread(self._release, gone)
            await asyncio.to_thread(self._write, networks)

    async def publish(self, entries: Iterable[HostEntry]) -> None:
        new = by_key(entries)
        async with self._lock:
            changed = {e.network_id for e in new.values()}
            changed |= {self._entries[k].network_id for k in new if k in self._entries}
            self._entries.update(new)
            await asyncio.to_thread(self._write, changed)

    async def withdraw(self, instance_id: InstanceId) -> None:
        async with self._lock:
            gone = [self._entries.pop(k) for k in list(self._entries) if k[0] == instance_id]
            if gone:
                await asyncio.to_thread(self._release, gone)
                await asyncio.to_thread(self._write, {e.network_id for e in gone})

    async def entries(self) -> list[HostEntry]:
        return sorted(self._entries.values())

    async def close(self) -> None:
        """Nothing to release: the files and the dnsmasq stay."""

    def _networks_on_disk(self) -> set[NetworkId]:
        found = set()
        directory = self.settings.dnsmasq_dir
        if directory.is_dir():
            for path in directory.glob("dhcp-hosts.*"):
                suffix = path.name.rpartition(".")[2]
                if suffix.isdigit():
                    found.add(NetworkId(int(suffix)))
        return found

    def _write(self, networks: set[NetworkId]) -> None:
        for network_id in sorted(networks):
            mine = sorted(e for e in self._entries.values() if e.network_id == network_id)
            leases = "".join(f"{e.mac},{e.ip},{e.hostname}\n" for e in mine)
            names = "".join(f"{e.ip} {e.fqdn} {e.hostname}\n" for e in mine)
            _replace(hosts_file(self.settings, network_id), leases)
            _replace(names_file(self.settings, network_id), names)
            self._reload(network_id)
            self._release_strays(network_id, mine)

    def _release(self, gone: Iterable[HostEntry]) -> None:
        """End the DHCP leases of withdrawn entries at once (``dhcp_release``, from
        dnsmasq-utils, run in the dnsmasq's network namespace on the interface it serves): a
        lease keeps its host name in dnsmasq's DNS until it ends, whatever the files say.
        Best effort: a lease that cannot be released ends at its lease time."""
        for entry in gone:
            client = self._client_id(entry)
            self._release_one(entry.network_id, entry.ip, entry.mac, client, entry.fqdn)

    def _release_strays(self, network_id: NetworkId, mine: list[HostEntry]) -> None:
        """End every lease dnsmasq still holds for a NIC no entry has any more: one withdrawn
        while no hook ran (a scheduler restarted after its instance was destroyed: its new
        backend never knew the entry, so ``replace_all`` had nothing to release) or while
        the dnsmasq was down (released at the network's next change). Found by the
        fault-injection suite (issue 14.6)."""
        wanted = {(e.mac.lower(), e.ip) for e in mine}
        for fields in _leases(leases_file(self.settings, network_id)):
            mac, ip = fields[1].lower(), fields[2]
            if (mac, ip) not in wanted:
                client = fields[4] if len(fields) > 4 and fields[4] != "*" else None
                self._release_one(network_id, ip, mac, client, f"{ip} ({mac}, no NIC any more)")

    def _release_one(
        self, network_id: NetworkId, ip: str, mac: str, client: str | None, what: str
    ) -> None:
        pid = _read_pid(pid_file(self.settings, network_id))
        interface = _serving(pid) if pid is not None else None
        if pid is None or interface is None:
            return
        argv = ["nsenter", f"--target={pid}", "--net", "dhcp_release", interface]
        argv += [ip, mac, client or "*"]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("cannot release the lease of %s: %s", what, exc)
            return
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip()
            log.warning("cannot release the lease of %s: %s", what, why)

    def _client_id(self, entry: HostEntry) -> str | None:
        """The client id the guest gave with its lease (the lease file's fifth column): a
        release without it does not match the lease."""
        for fields in _leases(leases_file(self.settings, entry.network_id)):
            if len(fields) >= 5 and fields[1].lower() == entry.mac.lower() and fields[4] != "*":
                return fields[4]
        return None

    def _reload(self, network_id: NetworkId) -> None:
        path = pid_file(self.settings, network_id)
        pid = _read_pid(path)
        if pid is None:
            log.warning("no dnsmasq pid in %s: network %s's files wait for it", path, network_id)
            return
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            log.warning("dnsmasq %s of network %s (%s) is not running", pid, network_id, path)
        except PermissionError as exc:
            raise BackendFailure(f"cannot signal dnsmasq {pid} ({path}): {exc}") from exc


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (readable by dnsmasq once it drops privileges)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise BackendFailure(f"cannot write {path}: {exc}") from exc


def _leases(path: Path) -> list[list[str]]:
    """The lines of a dnsmasq lease file (``expiry mac ip hostname client-id``), split."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [fields for line in lines if len(fields := line.split()) >= 3]


def _serving(pid: int) -> str | None:
    """The interface a running dnsmasq serves (its ``--interface=``), if it names one."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for arg in argv:
        if arg.startswith(b"--interface="):
            return arg.partition(b"=")[2].decode(errors="replace") or None
    return None


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class DnsmasqServer:
    """One dnsmasq serving network ``network_id`` on ``interface`` (which must exist and carry
    an address in ``subnet``), in namespace ``netns`` if given, reading the backend's files.
    Started and stopped by its pid; ``stop`` is idempotent and leaves no process behind."""

    def __init__(
        self,
        settings: DhcpDnsSettings,
        network_id: NetworkId,
        *,
        interface: str,
        subnet: str,
        netns: str | None = None,
        lease_time: str = "1h",
        binary: str = "dnsmasq",
    ) -> None:
        try:
            net = ipaddress.IPv4Network(subnet, strict=False)
        except ValueError as exc:
            raise InvalidInput(f"{subnet!r} is not an IPv4 subnet") from exc
        self.settings = settings
        self.network_id = network_id
        self.interface = interface
        self.subnet = net
        self.netns = netns
        self.lease_time = lease_time
        self.binary = binary
        self.pid_file = pid_file(settings, network_id)
        self.log_file = settings.dnsmasq_dir / f"dnsmasq.{network_id}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def argv(self) -> list[str]:
        s, n = self.settings, self.network_id
        domain = s.dns_domain.strip(".")
        argv = [
            self.binary,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            f"--pid-file={self.pid_file}",
            f"--interface={self.interface}",
            "--except-interface=lo",  # else each binds 127.0.0.1:53 and a second one fails
            "--bind-dynamic",
            "--user=root",
            "--no-resolv",
            "--no-hosts",
            f"--addn-hosts={names_file(s, n)}",
            f"--dhcp-hostsfile={hosts_file(s, n)}",
            f"--dhcp-range={self.subnet.network_address},static,{self.subnet.netmask},"
            f"{self.lease_time}",
            f"--dhcp-leasefile={leases_file(s, n)}",
            "--dhcp-authoritative",
            f"--domain={domain}",
            f"--local=/{domain}/",
            f"--local-ttl={s.dns_expire}",
            f"--log-facility={self.log_file}",
            "--log-dhcp",
        ]
        if self.netns is not None:
            return ["nsenter", f"--net=/run/netns/{self.netns}", *argv]
        return argv

    async def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it has written its pid file (it binds first)."""
        if self._process is not None and self._process.poll() is None:
            return
        for path in (
            hosts_file(self.settings, self.network_id),
            names_file(self.settings, self.network_id),
        ):
            if not path.exists():
                _replace(path, "")
        self.pid_file.unlink(missing_ok=True)
        try:
            self._process = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise BackendFailure(f"cannot start {self.binary}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while _read_pid(self.pid_file) != self._process.pid:
            if self._process.poll() is not None:
                err = (
                    self._process.stderr.read().decode(errors="replace")
                    if self._process.stderr
                    else ""
                )
                self._process = None
                raise BackendFailure(f"dnsmasq for network {self.network_id} exited: {err.strip()}")
            if time.monotonic() > deadline:
                await self.stop()
                raise BackendFailure(
                    f"dnsmasq for network {self.network_id} did not start in {timeout} s"
                )
            await asyncio.sleep(0.02)  # polling the pid file: dnsmasq has no readiness signal
        log.info(
            "dnsmasq %s serves network %s on %s", self._process.pid, self.network_id, self.interface
        )

    async def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.to_thread(process.wait, timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.to_thread(process.wait)
        if process.stderr is not None:
            process.stderr.close()
        self.pid_file.unlink(missing_ok=True)
