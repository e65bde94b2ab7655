"""``HttpNodeGateway``: the node gateway over HTTP, one client per registered node manager.

The address and secret of each node manager come from its registration (``NodeLink`` in the
store); a client is kept per host and replaced when the node registers again with a new one.
Each call carries the id of the API request it serves, if any (``tashi.web.requestids``), so
the node manager logs under the id the caller was given.
"""

from __future__ import annotations

import logging

from tashi.clustermanager.database import Database
from tashi.domain.errors import TashiError, Unavailable
from tashi.domain.firewall import Policy
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import DiskConfig, Host, Instance
from tashi.domain.nodes import Grant, Ticket, Transfer, VmStatus
from tashi.nodeapi.nmclient import NodeManagerClient
from tashi.web import requestids

log = logging.getLogger(__name__)


class HttpNodeGateway:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._clients: dict[int, tuple[str, str, NodeManagerClient]] = {}

    async def _client(self, host: Host) -> NodeManagerClient:
        link = await self._db.read(lambda tx: tx.hosts.link(host.id))
        if link is None:
            raise Unavailable(f"host {host.name!r} has no node manager registered")
        known = self._clients.get(host.id)
        if known is not None and known[:2] == (link.endpoint, link.secret):
            return known[2]
        if known is not None:
            await known[2].close()
        client = NodeManagerClient(
            link.endpoint, link.secret, host_name=host.name, request_id=requestids.current
        )
        self._clients[host.id] = (link.endpoint, link.secret, client)
        return client

    async def alive(self, host: Host) -> bool:
        try:
            return await (await self._client(host)).health()
        except TashiError:
            return False

    async def instantiate(self, host: Host, instance: Instance) -> int:
        return (await (await self._client(host)).start(instance)).vm_id

    async def resume(self, host: Host, instance: Instance, source: str) -> int:
        return (await (await self._client(host)).start(instance, source)).vm_id

    async def shutdown(self, host: Host, instance: Instance) -> None:
        await (await self._client(host)).shutdown(instance.id)

    async def destroy(self, host: Host, instance: Instance) -> None:
        await (await self._client(host)).destroy(instance.id)

    async def pause(self, host: Host, instance: Instance) -> None:
        await (await self._client(host)).pause(instance.id)

    async def unpause(self, host: Host, instance: Instance) -> None:
        await (await self._client(host)).unpause(instance.id)

    async def suspend(self, host: Host, instance: Instance, target: str) -> None:
        await (await self._client(host)).suspend(instance.id, target)

    async def prepare_incoming(self, host: Host, instance: Instance) -> Ticket:
        return await (await self._client(host)).prepare_incoming(instance)

    async def migrate(
        self, source: Host, instance: Instance, ticket: Ticket, timeout: float
    ) -> Transfer:
        return await (await self._client(source)).migrate(instance.id, ticket, timeout)

    async def finish_incoming(self, host: Host, instance: Instance) -> int:
        return (await (await self._client(host)).finish_incoming(instance.id)).vm_id

    async def grant(self, host: Host, subject: HostId) -> Grant:
        return await (await self._client(host)).grant(subject)

    async def vms(self, host: Host) -> dict[InstanceId, VmStatus]:
        return {InstanceId(vm.instance_id): vm for vm in await (await self._client(host)).list()}

    async def vmm_call(self, host: Host, instance: Instance, op: str, arg: str) -> str:
        return await (await self._client(host)).call(instance.id, op, arg)

    async def set_cpu_share(self, host: Host, instance: Instance, share: int) -> None:
        await (await self._client(host)).set_cpu_share(instance.id, share)

    async def attach_disk(self, host: Host, instance: Instance, disk: DiskConfig) -> None:
        await (await self._client(host)).attach_disk(instance.id, disk)

    async def detach_disk(self, host: Host, instance: Instance, uri: str, timeout: float) -> None:
        await (await self._client(host)).detach_disk(instance.id, uri, timeout)

    async def backup_disk(
        self, host: Host, instance: Instance, uri: str, snapshot_id: str, timeout: float
    ) -> None:
        await (await self._client(host)).backup_disk(instance.id, uri, snapshot_id, timeout)

    async def set_firewall(self, host: Host, policy: Policy) -> str:
        return await (await self._client(host)).set_firewall(policy)

    async def close(self) -> None:
        for _, _, client in self._clients.values():
            await client.close()
        self._clients.clear()
