"""Registration, heartbeats and VM events: how a node manager keeps its cluster manager told.

At start the node registers itself (SLA@SOI's automatic host registration: name, memory, cores,
version, and where and how to reach it). Then every ``registerFrequency`` seconds it sends a
heartbeat with its load and the state of each of its VMs. Events (a VM stopped, a suspend
finished) go to the ``outbox.Outbox`` on disk and are sent at once, in order; a failed send
keeps them for the next try, so nothing is lost while the cluster manager is away, nor when
this node manager dies before it could send them. A heartbeat answered "unknown host"
(the host was unregistered, or the cluster manager's database was replaced) registers again.
Both carry the network driver's underlay address, and the replies the other hosts' (``peers``,
handed to the driver: ``tashi.clustermanager.hosts.underlay``). Both carry the version of the
security-group policy this node enforces (``secgroups.FirewallService.version``), so the cluster
manager sends the policy again only to a node whose version differs from the one planned for it
(one that missed a change, or lost its policy with its state directory).

HA lease (ADR 0010). Each reply to a registration or heartbeat is a grant from the cluster
manager (``lease.HostLease``); the witness hosts named in the replies grant too
(``witnessing.Renewer``). ``fence_if_expired``, run every half second, stops every VM of this
host once the lease has run out with no grant from anyone, marks each one fenced
(``fencing.FenceMarks``) and reports them with the next heartbeat, so that the cluster manager
starts them elsewhere instead of taking them for VMs that ended.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tashi.domain.errors import NotFound, TashiError
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.nodes import Acknowledged, Heartbeat, NodeEvent, Registration, VmReport
from tashi.network.base import NetworkDriver
from tashi.nodeapi.cmclient import ClusterManagerClient
from tashi.nodemanager.fencing import FenceMarks
from tashi.nodemanager.lease import CM, HostLease
from tashi.nodemanager.outbox import Outbox
from tashi.nodemanager.service import NodeService

log = logging.getLogger(__name__)

_BATCH = 200


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    endpoint: str
    secret: str
    version: str
    peer_secret: str | None = None  # key of the tokens of the hosts this one witnesses


class Enforced(Protocol):
    """What enforces this host's security-group policy (``secgroups.FirewallService``)."""

    @property
    def version(self) -> str:
        """The version of the policy enforced now."""


def host_load() -> tuple[float, int | None]:
    """The 1-minute load average and the available memory in MB (Linux)."""
    load = os.getloadavg()[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return load, int(line.split()[1]) // 1024
    except OSError:
        pass
    return load, None


class Reporter:
    def __init__(
        self,
        client: ClusterManagerClient,
        node: NodeService,
        identity: Identity,
        capacity: Callable[[], tuple[int, int]],
        lease: HostLease,
        marks: FenceMarks,
        outbox: Outbox,
        monotonic: Callable[[], float] = time.monotonic,
        network: NetworkDriver | None = None,
        firewall: Enforced | None = None,
    ) -> None:
        """``firewall`` ``None``: the reports name no policy version (the cluster manager then
        sends this host its policy at every audit, changed or not)."""
        self._client = client
        self._firewall = firewall
        self._node = node
        self._identity = identity
        self._capacity = capacity
        self.lease = lease
        self._marks = marks
        self._monotonic = monotonic
        self._network = network  # told the other hosts' underlay addresses (``peers``)
        self._outbox = outbox
        self.host_id: HostId | None = None
        self._fence_logged: float | None = None  # the deadline whose fence was logged

    def put(self, event: NodeEvent) -> None:
        """Queue ``event`` (the node service puts its events in the outbox itself)."""
        self._outbox.put(event)

    def _reports(self, fenced: list[int]) -> tuple[VmReport, ...]:
        """This host's VMs, but those reported ``fenced`` in the same message: a VM marked
        fenced is on its way down (the watchdog or the self-fence stops it), and one reported
        both running and fenced was taken for running, its fence forgotten."""
        return tuple(
            VmReport(instance=inst, vm_id=vm_id, state=state.value)
            for inst, vm_id, state in self._node.report()
            if inst.id not in fenced
        )

    def _granted(self, sent: float, reply: Acknowledged, fenced: list[int]) -> None:
        """A reply: the cluster manager's grant, its word on the witnesses, and the fenced
        VMs it now knows of."""
        self.lease.learn(reply.host_id, reply.lease_time, reply.witnesses)
        self.lease.grant(CM, sent)
        self._marks.clear(fenced)

    async def register(self) -> HostId:
        memory, cores = self._capacity()
        underlay = await self._network.underlay_address() if self._network else None
        fenced = self._marks.ids()
        sent = self._monotonic()
        reply = await self._client.register(
            Registration(
                name=self._identity.name,
                memory=memory,
                cores=cores,
                version=self._identity.version,
                endpoint=self._identity.endpoint,
                secret=self._identity.secret,
                peer_secret=self._identity.peer_secret,
                vms=self._reports(fenced),
                underlay=underlay,
                witness_epoch=self._epoch(),
                fenced=tuple(InstanceId(i) for i in fenced),
                firewall=self._policy(),
            )
        )
        self.host_id = reply.host_id
        if len(self._outbox):
            self._outbox.ready.set()  # events put before the registration go now
        self._granted(sent, reply, fenced)
        await self._learn_peers(reply.peers)
        log.info(
            "registered as host %s (id %d, %s)", self._identity.name, reply.host_id, reply.state
        )
        return reply.host_id

    async def heartbeat(self) -> None:
        """One heartbeat (registering first when needed); a second one at once when the reply
        named a new witness set, so that the cluster manager learns without a heartbeat
        period's delay that this host uses it (until then it cannot restart this host's VMs
        elsewhere: ADR 0010)."""
        known = self._epoch()
        await self._beat()
        if self._epoch() != known and self.host_id is not None:
            await self._beat()

    async def _beat(self) -> None:
        if self.host_id is None:
            await self.register()
            return
        load, free = host_load()
        memory, cores = self._capacity()
        underlay = await self._network.underlay_address() if self._network else None
        fenced = self._marks.ids()
        sent = self._monotonic()
        try:
            reply = await self._client.heartbeat(
                self.host_id,
                Heartbeat(
                    load=load,
                    free_memory=free,
                    memory=memory,
                    cores=cores,
                    vms=self._reports(fenced),
                    underlay=underlay,
                    witness_epoch=self._epoch(),
                    fenced=tuple(InstanceId(i) for i in fenced),
                    firewall=self._policy(),
                ),
            )
        except NotFound:
            log.warning(
                "the cluster manager does not know host %d; registering again", self.host_id
            )
            self.host_id = None
            await self.register()
            return
        self._granted(sent, reply, fenced)
        await self._learn_peers(reply.peers)

    def _policy(self) -> str | None:
        return self._firewall.version if self._firewall is not None else None

    def _epoch(self) -> int | None:
        return self.lease.witnesses.epoch if self.lease.witnesses is not None else None

    async def _learn_peers(self, peers: tuple[str, ...] | None) -> None:
        """Hand the other hosts' underlay addresses to the network driver (vxlan floods to
        them besides its static ``[Vxlan] peers``). ``None``: the cluster manager sent none.
        A refusal is logged and tried again with the next reply."""
        if peers is None or self._network is None:
            return
        try:
            await self._network.set_peers(list(peers))
        except TashiError as exc:
            log.warning("could not update the network's peers to %s: %s", peers, exc.message)

    async def fence_if_expired(self) -> int:
        """Stop every VM of this host if the lease ran out; how many were stopped.

        Runs on its own schedule, never behind a heartbeat stuck on a dead connection. While
        the lease stays out, every VM found is stopped on every pass; a grant that came after
        the deadline is honoured only once the VMs found then are stopped."""
        if not self.lease.must_fence():
            return 0
        vms = [inst.id for inst, _, _ in self._node.report()]
        deadline = self.lease.deadline()
        if vms and self._fence_logged != deadline:
            self._fence_logged = deadline
            log.error(
                "this host's lease ran out with no grant from the cluster manager or any"
                " witness: stopping its %d VM(s) (self-fence), so that they never run twice",
                len(vms),
            )
        stopped = 0
        for iid in vms:
            self._marks.add(iid)
            try:
                await self._node.destroy(iid)
                stopped += 1
            except TashiError as exc:
                log.error("self-fence: could not stop the VM of instance %s: %s", iid, exc)
        if stopped == len(vms):
            self.lease.fenced()
        return stopped

    async def flush(self) -> int:
        """Send the queued events, oldest first; keep them on failure. Returns how many went."""
        sent = 0
        while len(self._outbox) and self.host_id is not None:
            batch = self._outbox.oldest(_BATCH)
            await self._client.events(self.host_id, batch)
            self._outbox.delivered(len(batch))
            sent += len(batch)
        return sent

    async def send_events_forever(self, retry: float) -> None:
        """Supervised loop: send events as they come; on failure retry after ``retry``."""
        while True:
            await self._outbox.ready.wait()
            self._outbox.ready.clear()
            try:
                await self.flush()
            except TashiError as exc:
                log.warning("could not send %d VM event(s): %s", len(self._outbox), exc.message)
                await asyncio.sleep(retry)
                self._outbox.ready.set()
