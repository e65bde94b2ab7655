"""``HttpNodeGateway``: the node gateway over HTTP, one client per node manager in use.

The address and secret of each node manager come from its registration (``NodeLink`` in the
store); a client is made for a host when it is called, replaced when the node registers again
with a new address or secret, and closed by ``sweep`` once no call has used it for ``IDLE``
seconds. A node manager closes a keep-alive connection after 5 s (``web/server.py``), which
left the cluster manager's end of it in CLOSE-WAIT for as long as the client lived: one file per
host ever called (2,875 at 2,000 hosts), one per member of a group start (issue 25). A call
after the sweep connects again, as it would have had to anyway.

Each call carries the id of the API request it serves, if any (``tashi.web.requestids``), so
the node manager logs under the id the caller was given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tashi.clustermanager.database import Database
from tashi.domain.errors import TashiError, Unavailable
from tashi.domain.firewall import Policy
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import DiskConfig, Host, Instance, NicConfig
from tashi.domain.nodes import Grant, Ticket, Transfer, VmStatus
from tashi.nodeapi.nmclient import NodeManagerClient
from tashi.web import requestids

log = logging.getLogger(__name__)

IDLE = 10.0  # seconds a node manager's client is kept after its last call ended


@dataclass(slots=True)
class _Kept:
    endpoint: str
    secret: str
    client: NodeManagerClient
    calls: int = 0  # calls under way
    last: float = 0.0  # when the last call ended (monotonic)


class HttpNodeGateway:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._clock = clock
        self._clients: dict[int, _Kept] = {}
        self._retired: list[_Kept] = []  # replaced while a call used them: closed by the sweep

    @property
    def open_clients(self) -> int:
        return len(self._clients)

    @asynccontextmanager
    async def _client(self, host: Host) -> AsyncIterator[NodeManagerClient]:
        link = await self._db.read(lambda tx: tx.hosts.link(host.id))
        if link is None:
            raise Unavailable(f"host {host.name!r} has no node manager registered")
        kept = self._clients.get(host.id)
        if kept is None or (kept.endpoint, kept.secret) != (link.endpoint, link.secret):
            if kept is not None and kept.calls == 0:
                await kept.client.close()
            elif kept is not None:
                self._retired.append(kept)
            client = NodeManagerClient(
                link.endpoint, link.secret, host_name=host.name, request_id=requestids.current
            )
            kept = self._clients[host.id] = _Kept(link.endpoint, link.secret, client)
        kept.calls += 1
        try:
            yield kept.client
        finally:
            kept.calls -= 1
            kept.last = self._clock()

    async def sweep(self) -> None:
        """Close the clients no call has used for ``IDLE`` seconds, and any replaced client
        whose last call has ended."""
        now = self._clock()
        for host_id, kept in list(self._clients.items()):
            if kept.calls == 0 and now - kept.last >= IDLE:
                del self._clients[host_id]
                await kept.client.close()
        done = [kept for kept in self._retired if kept.calls == 0]
        self._retired = [kept for kept in self._retired if kept.calls > 0]
        for kept in done:
            await kept.client.close()

    async def alive(self, host: Host) -> bool:
        try:
            async with self._client(host) as client:
                return await client.health()
        except TashiError:
            return False

    async def instantiate(self, host: Host, instance: Instance) -> int:
        async with self._client(host) as client:
            return (await client.start(instance)).vm_id

    async def resume(self, host: Host, instance: Instance, source: str) -> int:
        async with self._client(host) as client:
            return (await client.start(instance, source)).vm_id

    async def shutdown(self, host: Host, instance: Instance) -> None:
        async with self._client(host) as client:
            await client.shutdown(instance.id)

    async def destroy(self, host: Host, instance: Instance) -> None:
        async with self._client(host) as client:
            await client.destroy(instance.id)

    async def pause(self, host: Host, instance: Instance) -> None:
        async with self._client(host) as client:
            await client.pause(instance.id)

    async def unpause(self, host: Host, instance: Instance) -> None:
        async with self._client(host) as client:
            await client.unpause(instance.id)

    async def suspend(self, host: Host, instance: Instance, target: str) -> None:
        async with self._client(host) as client:
            await client.suspend(instance.id, target)

    async def prepare_incoming(self, host: Host, instance: Instance) -> Ticket:
        async with self._client(host) as client:
            return await client.prepare_incoming(instance)

    async def migrate(
        self, source: Host, instance: Instance, ticket: Ticket, timeout: float
    ) -> Transfer:
        async with self._client(source) as client:
            return await client.migrate(instance.id, ticket, timeout)

    async def finish_incoming(self, host: Host, instance: Instance) -> int:
        async with self._client(host) as client:
            return (await client.finish_incoming(instance.id)).vm_id

    async def grant(self, host: Host, subject: HostId) -> Grant:
        async with self._client(host) as client:
            return await client.grant(subject)

    async def vms(self, host: Host) -> dict[InstanceId, VmStatus]:
        async with self._client(host) as client:
            return {InstanceId(vm.instance_id): vm for vm in await client.list()}

    async def vmm_call(self, host: Host, instance: Instance, op: str, arg: str) -> str:
        async with self._client(host) as client:
            return await client.call(instance.id, op, arg)

    async def set_cpu_share(self, host: Host, instance: Instance, share: int) -> None:
        async with self._client(host) as client:
            await client.set_cpu_share(instance.id, share)

    async def attach_disk(self, host: Host, instance: Instance, disk: DiskConfig) -> None:
        async with self._client(host) as client:
            await client.attach_disk(instance.id, disk)

    async def detach_disk(self, host: Host, instance: Instance, uri: str, timeout: float) -> None:
        async with self._client(host) as client:
            await client.detach_disk(instance.id, uri, timeout)

    async def attach_nic(self, host: Host, instance: Instance, nic: NicConfig) -> None:
        async with self._client(host) as client:
            await client.attach_nic(instance.id, nic)

    async def detach_nic(self, host: Host, instance: Instance, mac: str, timeout: float) -> None:
        async with self._client(host) as client:
            await client.detach_nic(instance.id, mac, timeout)

    async def backup_disk(
        self, host: Host, instance: Instance, uri: str, snapshot_id: str, timeout: float
    ) -> None:
        async with self._client(host) as client:
            await client.backup_disk(instance.id, uri, snapshot_id, timeout)

    async def set_firewall(self, host: Host, policy: Policy) -> str:
        async with self._client(host) as client:
            return await client.set_firewall(policy)

    async def close(self) -> None:
        kept, self._clients, self._retired = [*self._clients.values(), *self._retired], {}, []
        for each in kept:
            await each.client.close()
