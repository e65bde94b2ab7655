"""Real QEMU guests of the tiny image, and a private network for them, for tests and benchmarks.

Plain functions and classes (no pytest), so ``bench/`` can use them too::

    with running(image, workdir) as guest:         # TCG, -M pc, overlay on the image
        up, seconds = guest.wait_for(markers.UP)   # polls the serial log until a deadline
                                                   # on exit: stopped by pid, overlay removed

    with PrivateNetwork.create() as net:           # netns + bridge 198.18.7.1/24
        with net.dhcp_server({mac: (ip, hostname)}, workdir):   # dnsmasq inside the netns
            with running(image, workdir, nics=[net.nic(mac)]) as guest: ...

Every process is started with an argv list and stopped by its own pid; the namespace (and so the
bridge and tap inside it) is deleted on exit. Nothing touches the root namespace's interfaces or
routes.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from qemu.qmp import QMPClient

from tashi.images import boot, markers

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 90.0  # TCG on a busy 2-core machine; a normal boot takes 2-5 s
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05

T = TypeVar("T")

SUBNET = "198.18.7"
BRIDGE = "tbr0"


def require_programs(*programs: str) -> None:
    """Fail (never skip) when a program the test needs is missing."""
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        raise AssertionError(f"{', '.join(missing)} not installed: run `make test`, which does")


@dataclass(frozen=True, slots=True)
class Nic:
    """A tap in network namespace ``netns`` and the MAC of the guest's virtio-net device on it."""

    netns: str
    tap: str
    mac: str


@dataclass
class Guest:
    """One qemu process booting an image: directly from its .kernel/.initrd/.cmdline sidecars
    when it has them, else from its own bootloader (SeaBIOS boots the virtio disk)."""

    process: subprocess.Popen[bytes]
    serial: Path
    qmp_socket: Path
    started: float
    overlay: Path | None

    @classmethod
    def start(
        cls,
        image: Path,
        workdir: Path,
        *,
        nics: Sequence[Nic] = (),
        root_disk: bool = True,
        memory_mb: int = 128,
        drives: Sequence[Path] = (),
    ) -> Guest:
        """``drives``: raw files attached read-only after the root disk (a NoCloud seed)."""
        image = image.resolve()  # a relative backing file would be read relative to the overlay
        direct = boot.direct_boot_of(image)
        assert direct is not None or root_disk, f"{image} has no .kernel sidecar to boot alone"
        workdir.mkdir(parents=True, exist_ok=True)
        serial = workdir / "serial.log"
        qmp_socket = workdir / "qmp.sock"
        argv = [QEMU, "-accel", "tcg", "-M", "pc", "-m", str(memory_mb), "-nodefaults"]
        argv += ["-nographic", "-monitor", "none", "-serial", f"file:{serial}"]
        argv += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
        argv += [] if direct is None else direct.qemu_args()
        overlay = None
        if root_disk:
            # The image is only ever a backing file: the guest writes to its own overlay.
            overlay = workdir / "overlay.qcow2"
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, overlay],
                check=True,
            )
            argv += ["-drive", f"file={overlay},if=virtio,format=qcow2"]
        for drive in drives:
            argv += ["-drive", f"file={drive.resolve()},if=virtio,format=raw,readonly=on"]
        for index, nic in enumerate(nics):
            argv += ["-netdev", f"tap,id=n{index},ifname={nic.tap},script=no,downscript=no"]
            argv += ["-device", f"virtio-net-pci,netdev=n{index},mac={nic.mac}"]
        if nics:
            argv = ["ip", "netns", "exec", nics[0].netns, *argv]  # ip execs qemu: same pid
        log = (workdir / "qemu.log").open("wb")
        process = subprocess.Popen(
            [str(arg) for arg in argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        return cls(process, serial, qmp_socket, time.monotonic(), overlay)

    def console(self) -> str:
        try:
            return self.serial.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(
        self, kind: str, *, iface: str | None = None, timeout: float = BOOT_TIMEOUT
    ) -> tuple[markers.Marker, float]:
        """The first marker of ``kind`` (and ``iface``) and the seconds since qemu started."""

        def first(console: str) -> markers.Marker | None:
            for marker in markers.scan(console):
                if marker.kind == kind and (iface is None or marker.iface == iface):
                    return marker
            return None

        return self._poll(first, f"{kind} marker", timeout)

    def wait_for_line(
        self, pattern: str, *, timeout: float = BOOT_TIMEOUT
    ) -> tuple[re.Match[str], float]:
        """The first match of the regular expression ``pattern`` on the console, and the
        seconds since qemu started (for guests that print no Tashi marker)."""
        return self._poll(re.compile(pattern).search, repr(pattern), timeout)

    def _poll(self, find: Callable[[str], T | None], what: str, timeout: float) -> tuple[T, float]:
        """Read the console until ``find`` finds something in it; fail when qemu exits first
        or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            found = find(self.console())
            if found is not None:
                return found, time.monotonic() - self.started
            if self.process.poll() is not None:
                raise AssertionError(f"qemu exited ({self.process.returncode}) before {what}:\n"
                                     + self.tail())  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:.1f} s:\n" + self.tail())
            time.sleep(POLL_INTERVAL)

    def powerdown(self) -> None:
        """Press the ACPI power button: QMP ``system_powerdown`` through qemu.qmp."""

        async def press() -> None:
            client = QMPClient("tashi-test")
            await client.connect(str(self.qmp_socket))
            try:
                await client.execute("system_powerdown")
            finally:
                await client.disconnect()

        asyncio.run(press())

    def wait_exit(self, timeout: float) -> int:
        """Wait for qemu to exit by itself; the exit status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"qemu still running {timeout:.0f} s later:\n" + self.tail())
            time.sleep(POLL_INTERVAL)
        return self.process.returncode

    def stop(self) -> None:
        """End qemu by its pid (SIGTERM, then SIGKILL) and remove its overlay."""
        _stop(self.process)
        if self.overlay is not None:
            self.overlay.unlink(missing_ok=True)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.console().splitlines()[-lines:])


@contextmanager
def running(
    image: Path,
    workdir: Path,
    *,
    nics: Sequence[Nic] = (),
    root_disk: bool = True,
    memory_mb: int = 128,
    drives: Sequence[Path] = (),
) -> Iterator[Guest]:
    """A guest started for the ``with`` block and stopped (by pid) when it ends, however."""
    guest = Guest.start(
        image, workdir, nics=nics, root_disk=root_disk, memory_mb=memory_mb, drives=drives
    )
    try:
        yield guest
    finally:
        guest.stop()


@dataclass
class PrivateNetwork:
    """A network namespace holding bridge ``tbr0`` (198.18.7.1/24); ``nic()`` adds taps to it."""

    netns: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)

    @classmethod
    @contextmanager
    def create(cls) -> Iterator[PrivateNetwork]:
        net = cls(f"tashi-test-{secrets.token_hex(4)}")
        _ip("netns", "add", net.netns)
        try:
            net.exec("ip", "link", "set", "lo", "up")
            net.exec("ip", "link", "add", BRIDGE, "type", "bridge")
            net.exec("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
            net.exec("ip", "link", "set", BRIDGE, "up")
            yield net
        finally:
            for process in reversed(net.processes):
                _stop(process)
            for tap in net.taps:
                subprocess.run(["ip", "-n", net.netns, "link", "del", tap], capture_output=True)
            _ip("netns", "del", net.netns)

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv], check=True, capture_output=True, text=True
        )

    def nic(self, mac: str) -> Nic:
        """A new tap on the bridge, for one guest NIC with ``mac``."""
        tap = f"ttap{len(self.taps)}"
        self.exec("ip", "tuntap", "add", "dev", tap, "mode", "tap")
        self.taps.append(tap)
        self.exec("ip", "link", "set", tap, "master", BRIDGE)
        self.exec("ip", "link", "set", tap, "up")
        return Nic(self.netns, tap, mac)

    def ping(self, address: str) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", self.netns, "busybox", "ping", "-c", "1", "-W", "2", address]
        return subprocess.run(argv, capture_output=True, text=True)

    @contextmanager
    def dhcp_server(self, hosts: dict[str, tuple[str, str]], workdir: Path) -> Iterator[Path]:
        """dnsmasq on the bridge, DHCP only (``--port=0``); ``hosts``: mac → (ip, hostname).

        Yields its log file. Stopped by pid when the block ends."""
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / "dnsmasq.log"
        argv = ["ip", "netns", "exec", self.netns, "dnsmasq", "--keep-in-foreground"]
        argv += ["--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts"]
        argv += [f"--interface={BRIDGE}", "--bind-interfaces", "--user=root"]
        argv += [f"--dhcp-range={SUBNET}.100,{SUBNET}.200,255.255.255.0,1h", "--leasefile-ro"]
        argv += [f"--dhcp-host={mac},{ip},{name}" for mac, (ip, name) in hosts.items()]
        argv += [f"--pid-file={workdir / 'dnsmasq.pid'}", f"--log-facility={log}", "--log-dhcp"]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        try:
            yield log
        finally:
            _stop(process)
            self.processes.remove(process)


def random_mac() -> str:
    """A locally administered unicast MAC in QEMU's 52:54:00 range."""
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in secrets.token_bytes(3))


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
