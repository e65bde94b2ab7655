"""The workload of the fault-injection suite: a churn of VMs through the admin client while
pieces of the cluster crash (``faults.py``).

Each operation is one of Tashi's verbs, drawn from a seeded ``random.Random`` among those the
cluster's state allows at that moment: ``createVm``, ``createMany`` of two, ``migrateVm`` of a
Running VM to another up host, ``suspendVm`` of a Running VM, ``resumeVm`` of a Suspended one,
``destroyVm`` (a Held instance first: it is reported by the round, then cleared away). The
population is kept between ``low`` and ``high`` instances, so the machine's two cores are not
drowned and there is always something to move.

While the cluster manager is down the client raises ``Unavailable``: the request is sent again
every half second until ``patience`` runs out. A request that was answered with a refusal
(``InvalidState``: the instance moved meanwhile, ``NotFound``, ...) counts as refused, not as a
failure. Each stop the workload asks for (destroy, suspend, migrate: a migration ends the
source's process; a resume can fail on its target) is recorded as an ``Ask`` for each try sent,
with its time and whether the cluster manager surely refused it: ``invariants.StopJudge`` only
excuses the end of a VM somebody asked for.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tashi.api.schemas import CreateManyIn, DiskIn, HostOut, InstanceIn, InstanceOut, NicIn
from tashi.client.sdk import TashiClient
from tashi.devcluster.qemuwatch import boottime
from tashi.domain.errors import BackendFailure, TashiError, Unavailable

T = TypeVar("T")
Say = Callable[[str], None]
RETRY_EVERY = 0.5  # seconds between two tries of a request the cluster manager did not answer


class GaveUp(Unavailable):
    """The cluster manager did not answer a request within the workload's patience."""


@dataclass(frozen=True)
class Ask:
    """The workload asked for ``kind`` of ``instance`` at ``at`` (boottime); ``refused``: the
    cluster manager answered no to every try, so nothing it did can be this ask's doing."""

    instance: int
    kind: str  # destroy, suspend, migrate, resume
    at: float
    refused: bool = False


@dataclass
class Tally:
    done: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    retries: int = 0  # tries sent again because the cluster manager did not answer


@dataclass(frozen=True)
class Shape:
    """What the workload makes: one VM's size, image and network; the population it keeps."""

    image: str
    network: int = 1
    memory: int = 128
    low: int = 3
    high: int = 7


class Churn:
    def __init__(
        self,
        admin: TashiClient,
        rng: random.Random,
        shape: Shape,
        *,
        patience: float = 120.0,
        say: Say = print,
    ) -> None:
        self.admin = admin
        self.rng = rng
        self.shape = shape
        self.patience = patience
        self.say = say
        self.asks: list[Ask] = []
        self.tally = Tally()
        self.unanswered = False  # the last ``call`` had a try that was not answered
        self._names = 0

    # --- requests that outlive a cluster manager's absence ---------------------------------

    def call(self, what: str, request: Callable[[], T]) -> T:
        """``request()``, sent again while the cluster manager does not answer (``GaveUp``
        after ``patience``); a refusal is raised as it came."""
        deadline = time.monotonic() + self.patience
        self.unanswered = False
        while True:
            try:
                return request()
            except (Unavailable, BackendFailure) as exc:
                # Also an answer in doubt: the request may have been done before the cluster
                # manager died; a retry is then refused, and ``unanswered`` says so.
                self.unanswered = True
                if time.monotonic() > deadline:
                    raise GaveUp(f"{what}: no answer for {self.patience:.0f} s ({exc})") from exc
                self.tally.retries += 1
                time.sleep(RETRY_EVERY)

    def instances(self) -> list[InstanceOut]:
        return self.call("getInstances", self.admin.get_instances)

    def hosts(self) -> list[HostOut]:
        return self.call("getHosts", self.admin.get_hosts)

    def _act(self, kind: str, inst: InstanceOut, request: Callable[[], object]) -> None:
        """Send one request about ``inst``, recording an ask for each try: a try the cluster
        manager did not answer may have been done, and the next one done again (a migration
        rolled back when the cluster manager restarted, then made by the retry)."""
        sent: list[float] = []

        def attempt() -> object:
            sent.append(boottime())
            return request()

        refused = False
        try:
            self.call(f"{kind} {inst.name}", attempt)
        except GaveUp:
            self.asks += [Ask(inst.id, kind, at) for at in sent]
            raise
        except TashiError as exc:
            refused = not self.unanswered
            self.tally.refused[kind] += 1
            self.say(f"  {kind} {inst.name}: refused ({exc.code}: {exc.message})")
        else:
            self.tally.done[kind] += 1
        self.asks += [Ask(inst.id, kind, at, refused=refused) for at in sent]

    # --- the operations -----------------------------------------------------------------------

    def step(self, label: str) -> str:
        """One operation the cluster's state allows now; its name."""
        instances = self.instances()
        held = [i for i in instances if i.state == "Held"]
        running = [i for i in instances if i.state == "Running"]
        suspended = [i for i in instances if i.state == "Suspended"]
        choices: list[str] = []
        if len(instances) < self.shape.high:
            choices += ["create", "createMany"] * (2 if len(instances) < self.shape.low else 1)
        if len(instances) > self.shape.low or held:
            choices.append("destroy")
        if running:
            choices += ["migrate", "suspend"]
        if suspended:
            choices.append("resume")
        op = self.rng.choice(choices or ["create"])
        if op == "create":
            self._create(label)
        elif op == "createMany":
            self._create_many(label)
        elif op == "destroy":
            self._destroy(held or instances)
        elif op == "migrate":
            self._migrate(running)
        elif op == "suspend":
            inst = self.rng.choice(running)
            self._act("suspend", inst, lambda: self.admin.suspend_vm(inst.id))
        else:
            inst = self.rng.choice(suspended)
            self._act("resume", inst, lambda: self.admin.resume_vm(inst.id))
        return op

    def _name(self, label: str) -> str:
        self._names += 1
        return f"{label}-{self._names}"

    def _create(self, label: str) -> None:
        s = self.shape
        request = InstanceIn(
            name=self._name(label),
            memory=s.memory,
            disks=[DiskIn(uri=s.image)],
            nics=[NicIn(network=s.network)],
        )
        self._made("create", request.name, lambda: [self.admin.create_vm(request)])

    def _create_many(self, label: str) -> None:
        s = self.shape
        request = CreateManyIn(
            basename=self._name(label),
            count=2,
            memory=s.memory,
            disks=[DiskIn(uri=s.image)],
            nics=[NicIn(network=s.network)],
        )
        self._made("createMany", request.basename, lambda: self.admin.create_many(request))

    def _made(self, kind: str, name: str, request: Callable[[], Sequence[InstanceOut]]) -> None:
        try:
            self.call(f"{kind} {name}", request)
        except GaveUp:
            raise
        except TashiError as exc:
            # AlreadyExists after a retry: the first try was done, its answer lost.
            if exc.code != "already_exists":
                self.tally.refused[kind] += 1
                self.say(f"  {kind} {name}: refused ({exc.code}: {exc.message})")
                return
        self.tally.done[kind] += 1

    def _destroy(self, candidates: list[InstanceOut]) -> None:
        inst = self.rng.choice(candidates)
        self._act("destroy", inst, lambda: self.admin.destroy_vm(inst.id))

    def _migrate(self, running: list[InstanceOut]) -> None:
        inst = self.rng.choice(running)
        targets = [h for h in self.hosts() if h.up and h.id != inst.hostId]
        if not targets:
            self.tally.refused["migrate"] += 1
            return
        target = self.rng.choice(targets)
        self._act("migrate", inst, lambda: self.admin.migrate_vm(inst.id, target.id))
