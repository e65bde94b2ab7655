"""Faults for the fault-injection suite (issue 14.6): which piece of a virtual cluster to crash,
at what moment of a round, for how long, and what really happened when it was done.

A fault is one ``tashi-cluster rm <target>`` (a SIGKILL by pid: ``control.py``), a wait, and
``tashi-cluster add <target>``, run through the command line as an operator would (the ``cli``
callable: ``python -m tashi.devcluster.cli --state-dir ...``). The targets are the control
plane's pieces: ``cm``, ``scheduler``, ``nm:N`` (the node manager alone: its VMs and watchdog
live on) and ``dnsmasq:NET``.

``choose`` draws a fault from a seeded ``random.Random``: its moment in the round (so that it
lands while the workload's requests are in flight), and how long the piece stays down: mostly
shorter than the hosts' lease, sometimes (``long_odds``) longer, for a node manager (its lease
runs out, its watchdog stops its VMs, and the cluster manager restarts them elsewhere) and for
the cluster manager (its witnesses keep every host's lease: nothing may stop).

``Injector`` runs one fault in a thread of its own beside the workload and records an
``Outage``: when the kill was sent and when the piece was back. For a node manager "back" is
the first heartbeat the cluster manager received from the new process: only from then on does
the host hold a lease again. Whether the host counts as crashed (its VMs may legitimately have
been fenced) is decided from those measured times, never from what the daemons say they did
(``Outage.crashed``). Times are ``CLOCK_BOOTTIME`` seconds, the clock of ``qemuwatch``'s lives.
"""

from __future__ import annotations

import enum
import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tashi.client.sdk import TashiClient
from tashi.devcluster.qemuwatch import boottime
from tashi.domain.errors import TashiError

Cli = Callable[..., "subprocess.CompletedProcess[str]"]
POLL = 0.1  # seconds between looks at a restarted node manager's heartbeat
BACK_TIMEOUT = 60.0  # seconds a restarted node manager has for its first heartbeat


class Kind(enum.Enum):
    """What a fault crashes: the cluster manager, the scheduler, one host's node manager, one
    VM network's dnsmasq."""

    CM = "cm"
    SCHEDULER = "scheduler"
    NM = "nm"
    DNSMASQ = "dnsmasq"


def wall_to_boottime(wall: float) -> float:
    """A wall-clock time (``time.time()``, a heartbeat's timestamp) on ``CLOCK_BOOTTIME``."""
    return wall - time.time() + boottime()


@dataclass(frozen=True)
class Fault:
    kind: Kind
    target: str  # as rm/add take it: cm, scheduler, nm:2, dnsmasq:1
    delay: float  # seconds from the round's start to the kill
    down: float  # seconds between the kill and the restart

    @property
    def host(self) -> str | None:
        """The host whose node manager is crashed (``host2``), if that is the fault."""
        return f"host{self.target.partition(':')[2]}" if self.kind is Kind.NM else None

    def __str__(self) -> str:
        return f"{self.target} at +{self.delay:.1f} s for {self.down:.1f} s"


@dataclass
class Outage:
    """What happened when ``fault`` was injected (``None``: that step was not reached)."""

    fault: Fault
    killed: float | None = None  # boottime just before `rm`
    restarted: float | None = None  # boottime just before `add`
    added: float | None = None  # boottime `add` returned (the piece answers again)
    back: float | None = None  # `added`; for a node manager: its first heartbeat after it
    error: str | None = None  # rm or add failed (what the command said)

    @property
    def adding(self) -> float | None:
        """Seconds ``tashi-cluster add`` took (start, readiness check, waits)."""
        if self.restarted is None or self.added is None:
            return None
        return self.added - self.restarted

    @property
    def length(self) -> float | None:
        """Seconds from the kill until the piece was back."""
        return None if self.killed is None or self.back is None else self.back - self.killed

    def crashed(self, safe: float) -> bool:
        """Whether the host of a node-manager fault may have lost its lease: its node manager
        was back (heartbeating) more than ``safe`` seconds after the kill, or never."""
        if self.fault.kind is not Kind.NM or self.killed is None:
            return False
        length = self.length
        return length is None or length > safe


def choose(
    rng: random.Random,
    kind: Kind,
    hosts: list[int],
    networks: list[int],
    lease: float,
    *,
    long_odds: float = 0.3,
    window: float = 4.0,
) -> Fault:
    """A fault of ``kind`` on one of ``hosts`` / ``networks``, ``window`` seconds at most into
    the round; down for 0.2 to 3 s (a node manager: 1 s), or (node managers and the cluster
    manager, with odds ``long_odds``) for lease + 2 to lease + 8 s."""
    if kind is Kind.NM:
        target = f"nm:{rng.choice(hosts)}"
    elif kind is Kind.DNSMASQ:
        target = f"dnsmasq:{rng.choice(networks)}"
    else:
        target = kind.value
    delay = rng.uniform(0.0, window)
    long = kind in (Kind.NM, Kind.CM) and rng.random() < long_odds
    if long:
        down = rng.uniform(lease + 2.0, lease + 8.0)
    else:  # a node manager takes a second or two to start and send its first heartbeat
        down = rng.uniform(0.2, 1.0 if kind is Kind.NM else 3.0)
    return Fault(kind, target, round(delay, 2), round(down, 2))


class Injector:
    """Runs one ``Fault`` in a thread: ``start()``, then ``join()`` for its ``Outage``.

    ``admin`` makes a client of the injector's own (the workload's is not shared between
    threads), used to see a restarted node manager's first heartbeat."""

    def __init__(self, fault: Fault, cli: Cli, admin: Callable[[], TashiClient]) -> None:
        self.outage = Outage(fault)
        self._cli = cli
        self._admin = admin
        self._began = boottime()
        self._thread = threading.Thread(target=self._run, name=f"fault-{fault.target}")

    def start(self) -> None:
        self._began = boottime()
        self._thread.start()

    def join(self, timeout: float) -> Outage:
        self._thread.join(timeout)
        if self._thread.is_alive() and self.outage.error is None:
            self.outage.error = f"the fault was still running after {timeout:.0f} s"
        return self.outage

    def _pause_until(self, moment: float) -> None:
        """The fault's own schedule: nothing to wait for but time."""
        while (left := moment - boottime()) > 0:
            time.sleep(min(left, 0.5))

    def _run(self) -> None:
        # A supervision boundary: whatever goes wrong is the outage's error, never a lost
        # thread (the round reports it as a violation).
        try:
            self._inject()
        except Exception as exc:  # noqa: BLE001
            self.outage.error = f"{type(exc).__name__}: {exc}"

    def _inject(self) -> None:
        fault, outage = self.outage.fault, self.outage
        self._pause_until(self._began + fault.delay)
        outage.killed = boottime()
        done = self._cli("rm", fault.target)
        if done.returncode != 0:
            outage.error = f"rm {fault.target}: {done.stdout}{done.stderr}".strip()
            return
        self._pause_until(outage.killed + fault.down)
        outage.restarted = boottime()
        wall = time.time()
        done = self._cli("add", fault.target)
        if done.returncode != 0:
            outage.error = f"add {fault.target}: {done.stdout}{done.stderr}".strip()
            return
        outage.added = boottime()
        outage.back = outage.added if fault.host is None else self._first_heartbeat(fault, wall)

    def _first_heartbeat(self, fault: Fault, since: float) -> float | None:
        """When the cluster manager first heard from the restarted node manager (boottime)."""
        deadline = time.monotonic() + BACK_TIMEOUT
        with self._admin() as admin:
            while time.monotonic() < deadline:
                try:
                    host = admin.get_host(str(fault.host))
                except TashiError:
                    host = None
                beat = host.lastHeartbeat if host is not None else None
                if beat is not None and beat.timestamp() >= since:
                    return wall_to_boottime(beat.timestamp())
                time.sleep(POLL)
        self.outage.error = f"{fault.host} sent no heartbeat {BACK_TIMEOUT:.0f} s after add"
        return None
