"""The fault-injection suite (issue 14.6): rounds of VM churn on a virtual cluster while a
piece of it is SIGKILLed at a random moment, every invariant checked after each round.

One ``FaultRun`` drives a running ``tashi-cluster`` (anything with its ``layout``, an admin
client and its command line: ``ClusterLike``) for ``Plan.rounds`` rounds. A round:

1. draws a fault (``faults.choose``: the cluster manager, the scheduler, a node manager or a
   dnsmasq; its moment within the first seconds of the round; down mostly shorter than the
   lease, a node manager or the cluster manager sometimes longer) and starts it in its own
   thread (``faults.Injector``: ``tashi-cluster rm``, a wait, ``tashi-cluster add``);
2. meanwhile runs a few operations of the workload (``churn.Churn``: create, createMany,
   migrate, suspend, resume, destroy), retrying while the cluster manager is away;
3. once the fault is repaired, waits (``Plan.quiesce`` at most) until every host is up and
   every instance is in a stable state (Running, Paused, Suspended; Held counts as settled and
   is reported);
4. checks the invariants: no instance gone that the workload did not destroy,
   ``invariants.one_place``, ``leaks.judge`` and ``reach.silent`` (every Running VM answers a
   ping) on a snapshot, retried for ``Plan.settle`` seconds so that a
   clean-up still on its way is not taken for a leak, nor a guest still booting for a dead one,
   then ``invariants.ran_twice`` and ``invariants.StopJudge`` on the whole history of QEMU
   processes (``qemuwatch.QemuWatch``, every process followed by pidfd).

A node manager whose first heartbeat after the restart came more than ``lease - 2 x heartbeat``
seconds after the kill may have lost its lease: its host counts as crashed for that window
(``invariants.Crash``) and its VMs may have been fenced (stopped by its watchdog and started
elsewhere). Every random choice, faults and workload alike, comes from one
``random.Random(seed)``; the seed is printed first so a failing run can be replayed with the same
decisions (as far as the cluster's own timing lets a replay follow the same path). The test
(``tests/devcluster/test_faults.py``) and the benchmark (``bench/faults.py``) both run this.
"""

from __future__ import annotations

import configparser
import random
import secrets
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tashi.api.schemas import HostOut, InstanceOut
from tashi.client.sdk import TashiClient, base_url
from tashi.devcluster import configs, leaks, reach
from tashi.devcluster.churn import Ask, Churn, GaveUp, Shape
from tashi.devcluster.faults import Fault, Injector, Kind, Outage, choose
from tashi.devcluster.invariants import (
    STABLE,
    Crash,
    StopJudge,
    one_place,
    ran_twice,
    teardowns,
)
from tashi.devcluster.qemuwatch import Life, QemuWatch, boottime
from tashi.devcluster.state import Layout
from tashi.domain.errors import TashiError

Say = Callable[[str], None]
POLL = 0.5
SETTLED = STABLE | {"Held"}
#: The faults dealt, each in turn in a random order: node managers twice (there are several,
#: and only their faults can crash a host).
DECK = (Kind.CM, Kind.SCHEDULER, Kind.NM, Kind.NM, Kind.DNSMASQ)


class ClusterLike(Protocol):
    """A running virtual cluster: its state directory, an admin client, its command line."""

    @property
    def layout(self) -> Layout: ...

    @property
    def admin(self) -> TashiClient: ...

    def cli(self, *args: str, timeout: float = ...) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class Plan:
    rounds: int = 30
    seed: int | None = None  # None: a fresh one (printed)
    ops: tuple[int, int] = (3, 6)  # operations per round, at least / at most
    lease: float = 6.0  # the cluster's hostLeaseTime
    heartbeat: float = 1.0  # the hosts' registerFrequency
    long_odds: float = 0.3  # odds that a node manager or cluster manager stays down > lease
    schedule: tuple[tuple[Kind, bool | None], ...] = ()  # first rounds' (fault, long?)
    quiesce: float = 180.0  # seconds a round may take to settle
    settle: float = 20.0  # seconds a snapshot's violations may take to clear
    shape: Shape = field(default_factory=lambda: Shape(image="tashi-tiny.qcow2"))

    @property
    def safe(self) -> float:
        """A node manager back within this many seconds of its kill kept its lease."""
        return self.lease - 2 * self.heartbeat


@dataclass
class RoundResult:
    number: int
    fault: Fault
    outage: Outage
    crashed: bool
    ops: list[str]
    violations: list[str]
    seconds: float
    instances: int


@dataclass
class Report:
    seed: int
    rounds: list[RoundResult] = field(default_factory=list)
    final: list[str] = field(default_factory=list)  # violations found after the last round
    ops: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    seconds: float = 0.0

    @property
    def faults(self) -> Counter[str]:
        found: Counter[str] = Counter(r.fault.kind.value for r in self.rounds)
        found["nm (host crashed)"] = sum(r.crashed for r in self.rounds)
        return found

    @property
    def violations(self) -> list[str]:
        found = [f"round {r.number}: {v}" for r in self.rounds for v in r.violations]
        return found + [f"after the last round: {v}" for v in self.final]


def client_access(layout: Layout) -> tuple[str, str, str]:
    """The cluster manager's URL and the admin's user name and password (``client.cfg``)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(layout.client_config)
    client, access = parser["Client"], parser["AccessClusterManager"]
    url = base_url(client["clusterManagerHost"], int(client["clusterManagerPort"]))
    return url, access["username"], access["password"]


def admin_client(layout: Layout) -> TashiClient:
    url, username, password = client_access(layout)
    return TashiClient(url, username=username, password=password)


def keep_logs(layout: Layout, target: Path) -> Path:
    """Copy the cluster's logs (daemons, dnsmasqs, watchdogs, with the older copy ``<log>.1``
    of one the log keeper capped), ``cluster.json`` and the DhcpDns hook's files to ``target``:
    ``tashi-cluster stop`` removes the state directory."""
    for path in sorted(layout.root.rglob("*")):
        named = path.suffix in (".log", ".json") or path.name.endswith(".log.1")
        wanted = named or path.parent.name == "dnsmasq"
        if wanted and path.is_file() and not path.is_symlink():
            copy = target / path.relative_to(layout.root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
    return target


class FaultRun:
    def __init__(self, cluster: ClusterLike, plan: Plan, say: Say = print) -> None:
        self.cluster = cluster
        self.plan = plan
        self.say = say
        seed = plan.seed if plan.seed is not None else secrets.randbits(32)
        self.report = Report(seed)
        self.rng = random.Random(seed)
        self.churn = Churn(cluster.admin, self.rng, plan.shape, say=say)
        self.crashes: list[Crash] = []
        self._stops = StopJudge()
        self._fresh = 0.0  # boottime the current round began: its requests explain its ends
        self._twice: set[tuple[int, int]] = set()
        self._standing: set[str] = set()  # snapshot violations reported already
        self._deck: list[Kind] = []
        self._stuck: set[int] = set()  # instances reported unsettled already
        self._seen: dict[int, str] = {}  # every instance the checks have seen: id -> name
        url, username, password = client_access(cluster.layout)
        self._addresses = TashiClient(url, username=username, password=password)

    def run(self) -> Report:
        began = time.monotonic()
        self.say(f"fault injection: {self.plan.rounds} rounds, seed {self.report.seed}")
        try:
            with QemuWatch(self.cluster.layout.root) as watch:
                for number in range(1, self.plan.rounds + 1):
                    self.report.rounds.append(self.round(number, watch))
                self.report.final = self.history(watch)
        finally:
            self.close()
            tally = self.churn.tally
            self.report.ops, self.report.refused = tally.done, tally.refused
            self.report.retries = tally.retries
            self.report.seconds = time.monotonic() - began
        return self.report

    def close(self) -> None:
        """Release the connection of the address-table checks (``run`` does it itself)."""
        self._addresses.close()

    # --- one round ----------------------------------------------------------------------------

    def _fault(self, number: int) -> Fault:
        schedule = self.plan.schedule
        if number <= len(schedule):
            kind, long = schedule[number - 1]
        else:
            if not self._deck:  # every kind in turn, in a random order each time
                self._deck = list(DECK)
                self.rng.shuffle(self._deck)
            kind, long = self._deck.pop(), None
        state = self.cluster.layout.load()
        odds = self.plan.long_odds if long is None else float(long)
        return choose(
            self.rng, kind, sorted(state.hosts), state.networks, self.plan.lease, long_odds=odds
        )

    def round(self, number: int, watch: QemuWatch) -> RoundResult:
        began = time.monotonic()
        self._fresh = boottime()
        fault = self._fault(number)
        self.say(f"round {number}: {fault}")
        injector = Injector(fault, self.cluster.cli, lambda: admin_client(self.cluster.layout))
        injector.start()
        ops, violations = [], []
        for _ in range(self.rng.randint(*self.plan.ops)):
            try:
                ops.append(self.churn.step(f"r{number}"))
            except GaveUp as exc:  # the cluster manager stayed away: reported, not fatal
                violations.append(exc.message)
                break
            time.sleep(self.rng.uniform(0.2, 1.5))  # the workload's own pace
        outage = injector.join(timeout=300.0)
        if outage.error:
            violations.append(f"fault {fault}: {outage.error}")
        crashed = outage.crashed(self.plan.safe)
        if crashed and outage.killed is not None and fault.host is not None:
            until = outage.back if outage.back is not None else float("inf")
            self.crashes.append(Crash(fault.host, outage.killed, until))
        violations += self.quiesce()
        violations += self.snapshot(watch)
        violations += self.history(watch)
        try:
            instances = len(self.churn.instances())
        except GaveUp as exc:
            violations.append(exc.message)
            instances = -1
        length = f"{outage.length:.1f} s" if outage.length is not None else "?"
        if outage.adding is not None:
            length += f" (add {outage.adding:.1f} s)"
        self.say(
            f"round {number}: {' '.join(ops)}; {fault.target} away {length}"
            f"{' (host crashed)' if crashed else ''}; {instances} instances;"
            f" {len(violations)} violation(s)"
        )
        for violation in violations:
            self.say(f"  VIOLATION {violation}")
        seconds = time.monotonic() - began
        return RoundResult(number, fault, outage, crashed, ops, violations, seconds, instances)

    def quiesce(self) -> list[str]:
        """Wait until every host is up and every instance stable (Held counts: it is reported
        by ``one_place``); a violation naming what is not, at the deadline. An instance found
        stuck by an earlier round is not waited for again (it counts once; its state's own
        deadline may take many minutes to move it on)."""
        deadline = time.monotonic() + self.plan.quiesce
        while True:
            problem: str | None
            moving: set[int] = set()
            try:
                instances = self.churn.instances()
                moving = {i.id for i in instances if i.state not in SETTLED} - self._stuck
                problem = _unsettled(self.cluster.admin.get_hosts(), instances, self._stuck)
            except TashiError as exc:
                problem = exc.message
            if problem is None:
                return []
            if time.monotonic() > deadline:
                self._stuck |= moving
                return [f"not settled {self.plan.quiesce:.0f} s after the round: {problem}"]
            time.sleep(POLL)

    def snapshot(self, watch: QemuWatch) -> list[str]:
        """``one_place`` and ``leaks.judge`` until they find nothing, or ``settle`` runs out;
        what they found that an earlier round had not already reported (a leak left standing
        counts once)."""
        deadline = time.monotonic() + self.plan.settle
        while True:
            try:
                found = self._snapshot(list(watch.lives))
            except TashiError as exc:
                found = [f"the cluster manager did not answer the checks: {exc.message}"]
            if not set(found) - self._standing or time.monotonic() > deadline:
                break  # nothing, or nothing new: a standing violation does not go by waiting
            time.sleep(1.0)
        for still in sorted(set(found) & self._standing):
            self.say(f"  still: {still}")
        new = [v for v in found if v not in self._standing]
        self._standing.update(found)
        return new

    def _snapshot(self, lives: list[Life]) -> list[str]:
        admin = self.cluster.admin
        instances = admin.get_instances()
        names = {h.id: h.name for h in admin.get_hosts()}
        addresses = self._addresses.get_addresses()
        state = self.cluster.layout.load()
        look = leaks.look(self.cluster.layout, state)
        found = self._vanished(instances) + one_place(instances, names, lives)
        found += leaks.judge(look, state, instances, names, lives, addresses)
        return found + reach.silent(configs.plan(state).cm_ns, instances)

    def _vanished(self, instances: list[InstanceOut]) -> list[str]:
        """Instances seen before that are gone though the workload destroyed none of them
        (their end would be a VM stopped too, but one whose qemu had ended already, by a
        suspend, say, is no qemu's end)."""
        destroyed = {a.instance for a in self.churn.asks if a.kind == "destroy" and not a.refused}
        here = {i.id: i.name for i in instances}
        gone = {i: n for i, n in self._seen.items() if i not in here and i not in destroyed}
        self._seen.update(here)
        return [
            f"instance {name} ({iid}) is gone: nobody destroyed it" for iid, name in gone.items()
        ]

    def history(self, watch: QemuWatch) -> list[str]:
        lives = list(watch.lives)
        found = ran_twice(watch.overlaps(), self._twice)
        asks = self.churn.asks + self._teardowns({life.instance for life in lives if life.ended})
        return found + self._stops.unasked(lives, asks, self.crashes, self._fresh)

    def _teardowns(self, instances: set[int]) -> list[Ask]:
        """The group teardowns in these instances' histories, their times as boottime."""
        offset = boottime() - time.time()
        found: list[Ask] = []
        for iid in sorted(instances):
            try:
                events = self.cluster.admin.get_instance_history(iid)
            except TashiError:
                continue  # removed: its end is explained by its destroy, or reported
            found += teardowns(iid, [(e.kind, e.at.timestamp() + offset) for e in events])
        return found


def _unsettled(hosts: list[HostOut], instances: list[InstanceOut], known: set[int]) -> str | None:
    """What keeps the cluster from being settled (instances in ``known`` aside), or ``None``."""
    down = [h.name for h in hosts if not h.up]
    moving = [
        f"{i.name} ({i.id}) {i.state}"
        for i in instances
        if i.state not in SETTLED and i.id not in known
    ]
    if not down and not moving:
        return None
    return "; ".join(
        part
        for part in (
            f"hosts down: {', '.join(down)}" if down else "",
            f"instances: {', '.join(moving)}" if moving else "",
        )
        if part
    )
