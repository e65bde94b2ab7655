"""The first part of ``python -m bench ec2``: ``RunInstances`` to a running guest against
``createVm`` to a running guest, on a virtual cluster of the part's own, in the same run.

A 2-host ``tashi-cluster`` (fabric ``FABRIC``, no other suite's or test module's; state in the
run's workspace; ``tashi.devcluster.harness.running_cluster``, which stops it whatever happens),
real QEMU under TCG, the tiny guest. The admin makes an access key; boto3 drives the cluster
manager's EC2 API on port 8773 of its namespace, the SDK (``TashiClient``) its REST API. An idle
VM runs on each host throughout (as in ``e2eboot.py``), so a host's VM network is made once and
not again by each launch (a node manager removes it with the last VM on it).

Two ways to launch the same VM (1 core, 128 MB, the tiny image, one NIC on the default
network), taken in turn, each round in the other order:

* ``RunInstances``: boto3's ``run_instances(ImageId=<the image's AMI>, InstanceType="tashi.tiny",
  MinCount=1, MaxCount=1)``, which gives the instance its own persistent root disk (a thin clone
  of the image in the store, made before it answers) and its owner's default security group,
  which the host enforces on its tap before the guest runs;
* ``createVm``: the SDK's ``create_vm`` of the same size and image: a copy-on-write overlay the
  node manager makes on its host, no security group (the baseline of the issue's goal).

Each is timed from the request to (a) the instance seen running through the API it was launched
with (EC2 ``running`` by ``describe_instances(InstanceIds=[…])``; Tashi ``Running`` by
``get_instance``; both polled every ``STATE_POLL`` s until seen), (a') its entering Running, as
the cluster manager recorded it (``stateSince``, on the same machine's clock: no polling in it),
and (b) ``TASHI-GUEST-UP`` in its serial log, on whichever host the scheduler chose. Then it is
destroyed (``terminate_instances``, which removes its root disk; ``destroy_vm``) and waited for
until gone.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cluster import BenchError
from bench.e2eboot import Console
from bench.ec2client import EC2_PORT, Say, ec2_client
from bench.neighbours import Neighbours, cores
from bench.nodecluster import tiny_image
from tashi.api.schemas import DiskIn, InstanceIn
from tashi.devcluster import fabric
from tashi.devcluster.harness import Running, ha_options, running_cluster
from tashi.devcluster.state import host_name
from tashi.domain.launches import image_id, instance_id
from tashi.images.markers import UP

FABRIC = "198.18.240.0/20"  # no other suite's or test module's (grep FABRIC bench/ tests/)
HOSTS = 2
LAUNCHES, QUICK_LAUNCHES = 20, 3  # of each side
SIDES = ("RunInstances", "createVm")
INSTANCE_TYPE = "tashi.tiny"  # 1 core, 128 MB ([InstanceTypes])
CORES, MEMORY = 1, 128
STATE_POLL = 0.05  # seconds between looks at an instance's state, either API
CONSOLE_POLL = 0.01  # seconds between looks at the serial logs
QUIET_WAIT, QUICK_QUIET_WAIT = 3.0, 1.0  # seconds a launch may wait for quiet neighbours
BOOT_TIMEOUT = 180.0
GONE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    side: str
    instance: int
    answered: float  # seconds from the request to its answer
    running: float  # ... to the instance seen running through the API it was launched with
    entered: float  # ... to its entering Running (its stateSince, the cluster manager's clock)
    up: float  # ... to TASHI-GUEST-UP
    neighbours: float  # cores other processes used meanwhile
    history: list[tuple[str, str, str]]  # (at, kind, message)


@dataclass
class LaunchResults:
    samples: list[Sample] = field(default_factory=list)
    cluster: dict[str, Any] = field(default_factory=dict)
    copies_left: list[str] = field(default_factory=list)  # root disks left, removed here

    def of(self, side: str) -> list[Sample]:
        return [s for s in self.samples if s.side == side]


@dataclass
class LaunchBench:
    cluster: Running
    ec2: Any  # boto3's EC2 client, as the admin
    image: str  # the tiny guest's name in the store
    neighbours: Neighbours
    quiet_wait: float
    say: Say
    results: LaunchResults
    _count: int = 0

    def run(self, launches: int) -> None:
        self.say(
            "[ec2] warm-up: an idle VM kept on each host (its network stays made), then one"
            " launch of each side"
        )
        for number in self.hosts:
            self._keep(number)
        for side in SIDES:
            self._one(side, timed=False)
        for n in range(launches):
            order = SIDES[n % 2 :] + SIDES[: n % 2]
            for side in order:
                sample = self._one(side)
                self.results.samples.append(sample)
                self.say(
                    f"[ec2] {n + 1}/{launches} {side}: running {sample.running:.2f} s, up"
                    f" {sample.up:.2f} s (answered {sample.answered:.3f} s, neighbours"
                    f" {sample.neighbours:.2f} cores)"
                )

    def _one(self, side: str, *, timed: bool = True) -> Sample:
        if timed:
            self.neighbours.wait_quiet(self.quiet_wait, 0.25)
        before, t0, wall = self.neighbours.snapshot(), time.monotonic(), time.time()
        if side == "RunInstances":
            iid, answered = self._run_instances(t0)
            running = self._ec2_running
        else:
            iid, answered = self._create_vm(t0)
            running = self._tashi_running
        seen_running, seen_up = self._wait(iid, running)
        after = self.neighbours.snapshot()
        entered = self._entered(iid) - wall
        history = self.cluster.admin.get_instance_history(iid)
        lines = [(e.at.isoformat(), e.kind, e.message) for e in history]
        self._destroy(side, iid)
        return Sample(
            side,
            iid,
            answered,
            seen_running - t0,
            entered,
            seen_up - t0,
            cores(before, after),
            lines,
        )

    def _keep(self, number: int) -> None:
        """A VM left running on host ``number`` until the cluster stops: the host's VM network
        (bridge, VXLAN device) is made once, as on a cluster with VMs, not by every launch."""
        request = InstanceIn(
            name=f"keep-{number}",
            cores=CORES,
            memory=MEMORY,
            disks=[DiskIn(uri=self.image)],
            hints={"targetHost": host_name(number)},
        )
        self._wait(self.cluster.admin.create_vm(request).id, self._tashi_running)

    def _run_instances(self, t0: float) -> tuple[int, float]:
        answer = self.ec2.run_instances(
            ImageId=image_id(self.image), InstanceType=INSTANCE_TYPE, MinCount=1, MaxCount=1
        )
        answered = time.monotonic() - t0
        return int(answer["Instances"][0]["InstanceId"][2:], 16), answered

    def _create_vm(self, t0: float) -> tuple[int, float]:
        self._count += 1
        request = InstanceIn(
            name=f"ec2b-{self._count}",
            cores=CORES,
            memory=MEMORY,
            disks=[DiskIn(uri=self.image)],  # nics: one on the default network
        )
        made = self.cluster.admin.create_vm(request)
        return made.id, time.monotonic() - t0

    def _ec2_running(self, iid: int) -> bool:
        answer = self.ec2.describe_instances(InstanceIds=[instance_id(iid)])
        [found] = [i for r in answer["Reservations"] for i in r["Instances"]]
        name = found["State"]["Name"]
        if name in ("terminated", "shutting-down", "stopped"):
            raise BenchError(f"{instance_id(iid)} became {name}")
        return bool(name == "running")

    def _tashi_running(self, iid: int) -> bool:
        state = self.cluster.admin.get_instance(iid).state
        if state in ("Exited", "Orphaned", "Destroying", "ShuttingDown"):
            raise BenchError(f"instance {iid} became {state}")
        return state == "Running"

    def _entered(self, iid: int) -> float:
        """When the instance entered Running (a Unix time)."""
        inst = self.cluster.admin.get_instance(iid)
        if inst.state != "Running" or inst.stateSince is None:
            raise BenchError(f"instance {iid} is {inst.state} since {inst.stateSince}")
        return inst.stateSince.timestamp()

    def _wait(self, iid: int, running: Callable[[int], bool]) -> tuple[float, float]:
        """(when the instance was seen running, when TASHI-GUEST-UP appeared)."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        seen_running: float | None = None
        next_look = 0.0
        consoles = [Console(self.cluster.layout.console(h, iid)) for h in self.hosts]
        while True:
            now = time.monotonic()
            if seen_running is None and now >= next_look:
                if running(iid):
                    seen_running = time.monotonic()
                next_look = now + STATE_POLL
            for console in consoles:
                console.poll((UP,))
                if seen_running is not None and UP in console.seen:
                    return seen_running, console.seen[UP]
            if now > deadline:
                raise BenchError(f"instance {iid}: not running and up in {BOOT_TIMEOUT:.0f} s")
            time.sleep(CONSOLE_POLL)

    @property
    def hosts(self) -> list[int]:
        return sorted(self.cluster.state.hosts)

    def _destroy(self, side: str, iid: int) -> None:
        admin = self.cluster.admin
        disks = [d.uri for d in admin.get_instance(iid).disks if d.persistent]
        if side == "RunInstances":
            self.ec2.terminate_instances(InstanceIds=[instance_id(iid)])
        else:
            admin.destroy_vm(iid)
        deadline = time.monotonic() + GONE_TIMEOUT
        while any(i.id == iid for i in admin.get_instances()):
            if time.monotonic() > deadline:
                raise BenchError(f"instance {iid} not gone after {GONE_TIMEOUT:.0f} s")
            time.sleep(0.05)
        stored = {i.imageName for i in admin.get_images()}
        for uri in disks:  # a root disk TerminateInstances left behind (it removes them)
            if uri in stored:
                if side == "RunInstances":
                    self.results.copies_left.append(uri)
                admin.remove_image(uri)


def run(root: Path, quick: bool, say: Say, results: LaunchResults) -> None:
    """Fill ``results`` (a part of them if a launch fails)."""
    if fabric.overlapping_routes(ipaddress.IPv4Network(FABRIC)):
        raise BenchError(f"the root namespace routes {FABRIC} already (another run?)")
    image = tiny_image(say)
    options = ha_options(FABRIC, image, hostMemory=2048)
    with running_cluster(root, HOSTS, options) as cluster:
        state = cluster.state
        results.cluster = {
            "tag": state.tag,
            "fabric": FABRIC,
            "hosts": HOSTS,
            "cgroup": state.cgroup,
            "root": str(cluster.layout.root),
        }
        key = cluster.admin.create_access_key()
        assert key.secretAccessKey is not None
        endpoint = f"http://{cluster.plan.cm_address}:{EC2_PORT}"
        ec2 = ec2_client(endpoint, key.accessKeyId, key.secretAccessKey)
        wait = QUICK_QUIET_WAIT if quick else QUIET_WAIT
        bench = LaunchBench(cluster, ec2, image.name, Neighbours(root), wait, say, results)
        bench.run(QUICK_LAUNCHES if quick else LAUNCHES)


def leftovers(results: LaunchResults) -> list[str]:
    """What is left of the part's cluster after its stop: namespaces and the root link of its
    tag, a route to its fabric, its cgroup, its state directory (none, if it ever started)."""
    cluster = results.cluster
    if not cluster:
        return []
    plan = fabric.Plan(cluster["tag"], ipaddress.IPv4Network(FABRIC))
    left = fabric.Fabric(plan).leftovers()
    left += [f"route {r}" for r in fabric.overlapping_routes(plan.subnet)]
    left += [f"{p} still exists" for p in (cluster["cgroup"], cluster["root"]) if Path(p).exists()]
    return left
