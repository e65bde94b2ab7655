"""Hollow hosts: many node managers in one asyncio process, for ``python -m bench scale``.

A hollow host is a node manager with no hypervisor under it, built from the node manager's
own parts as ``tashi.daemons.nm`` wires them: the real ``NodeService`` over the fake VMM driver
(``tashi.vmm.fake``) and the fake network driver, the real ``FirewallService`` (no kernel
plumbing, as for the fake network), the real ``Outbox``, ``HostLease`` and ``FenceMarks`` in a
state directory of its own, and the real ``Reporter`` talking through the real
``ClusterManagerClient``: it registers (``POST /v1/nodes``), heartbeats with a report of every
VM, sends its VM events and stops its own VMs when its HA lease runs out, as ``tashi-nm`` does.
Only the disks are hollow (``HollowDisks``: no overlay and no ``qemu-img`` per VM) and the
witness renewals are left out: a hollow host counts on the cluster manager's grants alone, the
stricter case for issue 25's point 7 (a late cluster manager alone may then make it fence).

The cluster manager's calls (``POST /v1/vms`` to start, ``DELETE`` to destroy, the security
group policy, ...) are answered by the real node app (``nodemanager.routes.create_app``). Not
one app per host: building one costs about 190 ms and 0.9 MB here (FastAPI's routes and their
pydantic models), so 2,000 hosts would take six minutes and 1.8 GB before the first heartbeat,
and one uvicorn server per host would wake 10 times a second each. Instead each host has its
own loopback port (its registered endpoint) and ONE app serves them all: ``PortRouter`` reads
the local port of each connection (ASGI ``scope["server"]``) and hands the app that host's
``NodeService`` for the request (``_RoutedNode``). Every host registers the same node secret.
Each batch of hosts added gets one uvicorn server listening on the batch's sockets.

``Fleet.window()`` starts a measurement window and ``Fleet.stats()`` says what happened in it:
heartbeats offered (sent) and answered, their latencies, the longest time any host went without
an answered heartbeat, VMs fenced, and how late this process's own event loop ran (a busy load
generator would inflate every latency it measures).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import math
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import uvicorn

import tashi
from bench.hollowwire import HollowClient
from tashi.daemons.nm import pump_events
from tashi.domain.clock import SystemClock
from tashi.domain.errors import NotFound, TashiError
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import DiskConfig
from tashi.network.fake import FakeNetworkDriver
from tashi.nodemanager.fencing import FenceMarks
from tashi.nodemanager.lease import HostLease
from tashi.nodemanager.outbox import Outbox
from tashi.nodemanager.reporting import Identity, Reporter
from tashi.nodemanager.routes import create_app
from tashi.nodemanager.secgroups.service import FirewallService
from tashi.nodemanager.service import NodeService
from tashi.nodemanager.vmdirs import VmDirs
from tashi.nodemanager.witnessing import peer_secret
from tashi.runtime.tasks import Supervisor, backoff
from tashi.vmm.base import BootSpec, DiskSpec
from tashi.vmm.fake import FakeDriver
from tashi.web.limits import HttpLimits
from tashi.web.server import server_config

log = logging.getLogger("bench.hollow")

LEASE_CHECK_INTERVAL = 0.5  # as tashi-nm: how often an expired HA lease is looked for
LAG_TICK = 0.1  # the event-loop lag probe's period
REGISTER_CONCURRENCY = 8  # registrations in flight at once while the fleet grows
REGISTER_TRIES = 5
# One server carries every host of a batch: its connection cap must be far above the
# cluster manager's connections to all of them (uvicorn's limit_concurrency).
LIMITS = HttpLimits(
    max_body=16 * 1024 * 1024,
    head_timeout=10.0,
    body_timeout=30.0,
    max_connections=1_000_000,
    section="the hollow hosts' server",
)

_current: contextvars.ContextVar[NodeService | None] = contextvars.ContextVar(
    "hollow_node", default=None
)


class _HollowPrepared:
    """The disks of one hollow VM: a path per disk, nothing on disk to undo."""

    def __init__(self, root: Path, disks: Sequence[DiskConfig]) -> None:
        self.disks = tuple(DiskSpec(path=root / d.uri, format="raw") for d in disks)
        self.boot = BootSpec()

    def release(self) -> None:
        return None

    def settle(self) -> list[str]:
        return []

    def plug(self, disk: DiskConfig) -> DiskSpec:
        return DiskSpec(path=Path(disk.uri), format="raw")

    def unplug(self, path: Path) -> None:
        return None


class HollowDisks:
    """The node service's ``DiskPreparer`` for hollow hosts: the fake VMM driver opens no file,
    so a VM needs no overlay (the real ``DiskManager`` runs ``qemu-img`` twice per VM)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def prepare(
        self, instance_id: InstanceId, disks: Sequence[DiskConfig], *, incoming: bool = False
    ) -> _HollowPrepared:
        return _HollowPrepared(self._root, disks)

    def blank_like(self, source: Path, target: Path) -> None:
        return None

    def adopt(self, instance_id: InstanceId, disks: Sequence[DiskConfig]) -> _HollowPrepared:
        return _HollowPrepared(self._root, disks)

    def discard(self, instance_id: InstanceId) -> None:
        return None


class _RoutedNode:
    """Stands for the ``NodeService`` of the host whose port the current request came to."""

    def __getattr__(self, name: str) -> Any:
        node = _current.get()
        if node is None:
            raise NotFound("no hollow host listens on this port")
        return getattr(node, name)


class PortRouter:
    """ASGI: the node app, with the ``NodeService`` of the connection's local port."""

    def __init__(self, app: Any, nodes: dict[int, NodeService]) -> None:
        self._app = app
        self._nodes = nodes
        self.calls = 0  # the cluster manager's requests to the hosts, since the start

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        server = scope.get("server") or ("", 0)
        token = _current.set(self._nodes.get(int(server[1] or 0)))
        try:
            await self._app(scope, receive, send)
        finally:
            _current.reset(token)


@dataclass
class HollowHost:
    """One hollow host: its node service, its reporter, its port; ``last`` and ``gap``: when
    its last heartbeat was answered and its longest wait for one in the window (monotonic)."""

    name: str
    port: int
    node: NodeService
    reporter: Reporter
    driver: FakeDriver
    client: HollowClient
    sock: socket.socket  # bound to ``port`` from the start, so no one else takes it
    last: float = 0.0
    gap: float = 0.0


@dataclass
class Window:
    """What the fleet saw since ``window()`` opened."""

    opened: float = field(default_factory=time.monotonic)
    offered: int = 0
    answered: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    fenced: int = 0
    node_calls: int = 0  # the router's count when the window opened


@dataclass(frozen=True, slots=True)
class Options:
    """How the fleet's hosts behave."""

    cm_url: str
    username: str  # a user of role node
    password: str
    root: Path  # the hosts' state directories go under it
    period: float  # registerFrequency: seconds between heartbeats
    memory: int  # MB each host offers
    cores: int


class Fleet:
    """Every hollow host of this process, their one node app and their heartbeat loops."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.hosts: list[HollowHost] = []
        self._nodes: dict[int, NodeService] = {}
        self._secret = secrets.token_urlsafe(32)  # as tashi-nm makes its own
        app = create_app(cast(NodeService, _RoutedNode()), self._secret, limits=LIMITS)
        self._app = PortRouter(app, self._nodes)
        self._servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
        self._beats: list[asyncio.Task[None]] = []
        self._supervisor = Supervisor()
        self._window = Window()
        self.fenced_total = 0  # VMs stopped by a lease that ran out, since the start
        self._token: str | None = None
        self._login_lock = asyncio.Lock()
        self._clock = SystemClock()

    async def start(self) -> None:
        self._supervisor.every("fence", LEASE_CHECK_INTERVAL, self._fence_pass)
        self._supervisor.every("lag", 1.0, self._lag_probe)

    async def grow(self, count: int) -> list[tuple[str, int]]:
        """Add ``count`` hosts: serve, register each, start its heartbeats; ``(name, id)``."""
        first = len(self.hosts)
        batch = [self._host(first + i) for i in range(count)]
        await self._serve(batch)
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)
        ids = await asyncio.gather(*(self._register(host, gate) for host in batch))
        for host in batch:
            host.last = time.monotonic()
            offset = random.uniform(0, self.options.period)  # spread over the period
            self._beats.append(asyncio.create_task(self._beat_loop(host, offset)))
            self._supervised(host)
        self.hosts.extend(batch)
        self.settle()
        return [(host.name, int(i)) for host, i in zip(batch, ids, strict=True)]

    def _supervised(self, host: HollowHost) -> None:
        """``tashi-nm``'s loops that carry VM events (the fake driver's, then the outbox's)."""
        driver, node, reporter = host.driver, host.node, host.reporter
        self._supervisor.every(f"vm-events {host.name}", 1.0, lambda: pump_events(driver, node))
        self._supervisor.every(
            f"send-events {host.name}", 1.0, lambda: reporter.send_events_forever(2.0)
        )

    def _host(self, index: int) -> HollowHost:
        options = self.options
        name = f"hollow-{index:05d}"
        state = options.root / name
        state.mkdir(parents=True, mode=0o700)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        driver = FakeDriver(memory=options.memory, cores=options.cores)
        network = FakeNetworkDriver([NetworkId(1)])
        outbox, marks = Outbox(state), FenceMarks(state)
        firewall = FirewallService(None, state)  # answers PUT /v1/firewall; reports its version
        node = NodeService(
            driver=driver,
            network=network,
            disks=HollowDisks(options.root),
            dirs=VmDirs(state / "vms"),
            suspend_dir=options.root / "suspend",
            images_dir=options.root / "images",
            events=outbox,
            now=self._clock.now,
            advertise_host="127.0.0.1",
            fenced=marks,
            firewall=firewall,
            release_memory=lambda: None,  # malloc_trim per VM: real, but not this benchmark's
        )
        client = HollowClient(options.cm_url, username=options.username, password=options.password)
        me = Identity(
            name=name,
            endpoint=f"http://127.0.0.1:{port}",
            secret=self._secret,
            version=tashi.__version__,
            peer_secret=peer_secret(state),  # so it may witness others, and have witnesses
        )
        capacity = (options.memory, options.cores)
        reporter = Reporter(
            client,
            node,
            me,
            lambda: capacity,
            lease=HostLease(state),
            marks=marks,
            outbox=outbox,
            network=network,
            firewall=firewall,
        )
        return HollowHost(name, port, node, reporter, driver, client, sock)

    async def _serve(self, batch: list[HollowHost]) -> None:
        sockets = []
        for host in batch:
            host.sock.listen(128)
            host.sock.setblocking(False)
            sockets.append(host.sock)
            self._nodes[host.port] = host.node
            await host.node.firewall.start()  # type: ignore[union-attr]  # set in _host
        config = server_config(self._app, host="127.0.0.1", port=0, limits=LIMITS)
        server = uvicorn.Server(config)
        # ``serve`` without its signal capture (this process stops on an order, not a signal;
        # nested captures of several servers would each take SIGTERM for their own).
        task = asyncio.create_task(server._serve(sockets), name=f"node api {len(self._servers)}")
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the hollow hosts' server stopped at its start")
            await asyncio.sleep(0.01)
        self._servers.append((server, task))

    async def _register(self, host: HollowHost, gate: asyncio.Semaphore) -> int:
        """Register ``host``; a failure is tried again a period later, as ``tashi-nm``'s
        heartbeat loop does, up to ``REGISTER_TRIES`` times in all."""
        async with gate:
            await self._share_login(host.client)
            for _try in range(REGISTER_TRIES - 1):
                try:
                    return int(await host.reporter.register())
                except TashiError as exc:
                    self._window.errors[f"register: {_kind(exc)}"] += 1
                await asyncio.sleep(self.options.period)
            return int(await host.reporter.register())

    async def _share_login(self, client: HollowClient) -> None:
        """One login for the fleet: a node-role login costs the cluster manager an scrypt hash
        (tens of ms); each real node manager logs in once at its start, hours apart from the
        others, so thousands here logging in at once would measure the hash, not the node
        protocol. Each client still logs in again by itself if its token is refused."""
        async with self._login_lock:  # concurrent logins count as failures till they succeed
            if self._token is None:
                await client.login()
                self._token = client._transport.token  # see above
        client._transport.token = self._token

    async def _beat_loop(self, host: HollowHost, offset: float) -> None:
        """``tashi-nm``'s heartbeat loop (``Supervisor.every`` with its back-off capped at the
        period), timed: a heartbeat is offered when sent, answered when its reply came.

        One difference: after an answered heartbeat ``tashi-nm`` sleeps a period, where a
        hollow host waits for its next slot (``next_slot``: every period from its random
        phase). Thousands of hosts share this process's loop, and a stall of the loop's own (a
        fill, a garbage collection) would otherwise leave every host it held up beating in
        the same instant for the rest of the run, as real hosts, each on its own machine,
        never would."""
        failures = 0
        period = self.options.period
        due = time.monotonic() + offset
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            started = time.monotonic()
            self._window.offered += 1
            try:
                await host.reporter.heartbeat()
            # A supervision boundary, as Supervisor's: the loop goes on whatever failed.
            except Exception as exc:  # noqa: BLE001
                failures += 1
                self._window.failed += 1
                self._window.errors[_kind(exc)] += 1
            else:
                failures = 0
                now = time.monotonic()
                window = self._window
                window.answered += 1
                window.latencies.append(now - started)
                host.gap = max(host.gap, now - host.last)
                host.last = now
            if failures:
                due = time.monotonic() + backoff(period, failures, period, random.random())
            else:
                due = next_slot(due, period, time.monotonic())

    async def _fence_pass(self) -> None:
        for host in self.hosts:
            if not host.reporter.lease.must_fence():  # most passes: no coroutine made
                continue
            stopped = await host.reporter.fence_if_expired()
            self._window.fenced += stopped
            self.fenced_total += stopped

    async def _lag_probe(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            self._window.lags.append(time.monotonic() - before - LAG_TICK)

    def settle(self) -> None:
        """Collect, then freeze what is left out of the garbage collector's way: the hosts,
        their VMs and their servers live to the end, and a full collection going through them
        all (75,000 VMs' instances) stops the loop, and every host's heartbeat, for seconds.
        Done after each ``grow``, and ordered after a fill; not when a window opens: the
        heartbeats it holds up would be counted in the window."""
        gc.collect()
        gc.freeze()

    def window(self) -> None:
        """Open a new measurement window."""
        self._window = Window(node_calls=self._app.calls)
        for host in self.hosts:
            host.gap = 0.0

    def stats(self) -> dict[str, Any]:
        """What the current window saw (latencies in seconds)."""
        w = self._window
        now = time.monotonic()
        gaps = [max(h.gap, now - h.last) for h in self.hosts]
        late = sum(1 for g in gaps if g > 1.5 * self.options.period)
        vms = sum(len(h.node.report()) for h in self.hosts)
        return {
            "hosts": len(self.hosts),
            "vms": vms,
            "seconds": now - w.opened,
            "offered": w.offered,
            "answered": w.answered,
            "failed": w.failed,
            "errors": dict(w.errors),
            "latency": _percentiles(w.latencies),
            "longest_gap": max(gaps, default=0.0),
            "late_hosts": late,
            "fenced": w.fenced,
            "fenced_total": self.fenced_total,
            "loop_lag": _percentiles(w.lags),
            "node_calls": self._app.calls - w.node_calls,  # the cluster manager's, to hosts
        }

    async def close(self) -> None:
        for task in self._beats:
            task.cancel()
        await asyncio.gather(*self._beats, return_exceptions=True)
        await self._supervisor.stop()
        for server, task in self._servers:
            server.should_exit = True
            await task
        for host in self.hosts:
            await host.client.close()
            await host.node.close()
            await host.driver.close()


def next_slot(slot: float, period: float, now: float) -> float:
    """The first of ``slot`` + k ``period`` (k ≥ 1) after ``now``: a late beat keeps its
    host's phase, and one past its next slot skips to the one after."""
    return slot + period * (math.floor((now - slot) / period) + 1)


def _kind(exc: BaseException) -> str:
    if isinstance(exc, TashiError):
        return f"{type(exc).__name__}: {exc.message[:80]}"
    return type(exc).__name__


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"count": len(ordered), "p50": at(0.50), "p99": at(0.99), "max": ordered[-1]}
