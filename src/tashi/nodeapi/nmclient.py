"""The cluster manager's client of one node manager, authenticated with the secret the node
handed over when it registered. ``request_id`` gives the id of the request being served, which
the node manager then logs under too (``transport``)."""

from __future__ import annotations

from collections.abc import Callable

from tashi.domain.firewall import Policy
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import DiskConfig, Instance, NicConfig
from tashi.domain.nodes import Grant, Ticket, Transfer, VmStatus
from tashi.nodeapi import convert, firewall, paths, timeouts
from tashi.nodeapi.schemas import (
    AttachDiskIn,
    AttachNicIn,
    BackupDiskIn,
    CpuShareIn,
    DetachDiskIn,
    DetachNicIn,
    GrantOut,
    IncomingIn,
    MessageOut,
    MigrateIn,
    MigrationOut,
    NicsOut,
    StartIn,
    SuspendIn,
    TicketOut,
    VmmCallIn,
    VmOut,
)
from tashi.nodeapi.transport import Transport


class NodeManagerClient:
    def __init__(
        self,
        endpoint: str,
        secret: str,
        *,
        host_name: str,
        request_id: Callable[[], str | None] | None = None,
    ) -> None:
        peer = f"the node manager of {host_name}"
        self._t = Transport(endpoint, peer=peer, token=secret, request_id=request_id)

    async def health(self) -> bool:
        reply = await self._t.call("GET", paths.HEALTH, dict[str, str], timeout=timeouts.CONNECT)
        return reply.get("status") == "ok"

    async def grant(self, host_id: HostId) -> Grant:
        """What this node, as a witness, last granted host ``host_id`` (ADR 0010)."""
        path = paths.GRANT.format(host_id=host_id)
        return convert.grant(await self._t.call("GET", path, GrantOut, timeout=timeouts.WITNESS))

    async def list(self) -> list[VmStatus]:
        return [convert.vm_status(vm) for vm in await self._t.call("GET", paths.VMS, list[VmOut])]

    async def start(self, instance: Instance, resume_from: str | None = None) -> VmStatus:
        body = StartIn(instance=convert.instance_wire(instance), resumeFrom=resume_from)
        reply = await self._t.call("POST", paths.VMS, VmOut, body=body, timeout=timeouts.START)
        return convert.vm_status(reply)

    async def destroy(self, instance_id: int) -> None:
        path = paths.VM.format(instance_id=instance_id)
        await self._t.call("DELETE", path, MessageOut, timeout=timeouts.DESTROY)

    async def _action(self, instance_id: int, action: str) -> None:
        await self._t.call("POST", paths.vm_action(instance_id, action), MessageOut)

    async def shutdown(self, instance_id: int) -> None:
        await self._action(instance_id, "shutdown")

    async def pause(self, instance_id: int) -> None:
        await self._action(instance_id, "pause")

    async def unpause(self, instance_id: int) -> None:
        await self._action(instance_id, "unpause")

    async def suspend(self, instance_id: int, target: str) -> None:
        path = paths.vm_action(instance_id, "suspend")
        await self._t.call("POST", path, MessageOut, body=SuspendIn(target=target))

    async def prepare_incoming(self, instance: Instance) -> Ticket:
        body = IncomingIn(instance=convert.instance_wire(instance))
        reply = await self._t.call(
            "POST", paths.INCOMING, TicketOut, body=body, timeout=timeouts.INCOMING
        )
        return convert.ticket(reply)

    async def migrate(self, instance_id: InstanceId, ticket: Ticket, timeout: float) -> Transfer:
        path = paths.vm_action(instance_id, "migrate")
        body = MigrateIn(ticket=convert.ticket_wire(ticket))
        reply = await self._t.call("POST", path, MigrationOut, body=body, timeout=timeout)
        return convert.transfer(reply)

    async def finish_incoming(self, instance_id: InstanceId) -> VmStatus:
        path = paths.vm_action(instance_id, "finishIncoming")
        reply = await self._t.call("POST", path, VmOut, timeout=timeouts.FINISH_INCOMING)
        return convert.vm_status(reply)

    async def call(self, instance_id: int, op: str, arg: str) -> str:
        path = paths.vm_action(instance_id, "call")
        reply = await self._t.call("POST", path, MessageOut, body=VmmCallIn(op=op, arg=arg))
        return reply.message

    async def set_cpu_share(self, instance_id: int, share: int) -> None:
        path = paths.vm_action(instance_id, "cpuShare")
        await self._t.call("POST", path, MessageOut, body=CpuShareIn(share=share))

    async def attach_disk(self, instance_id: int, disk: DiskConfig) -> None:
        path = paths.vm_action(instance_id, "attachDisk")
        body = AttachDiskIn(disk=convert.disk_wire(disk))
        await self._t.call("POST", path, MessageOut, body=body, timeout=timeouts.ATTACH)

    async def detach_disk(self, instance_id: int, uri: str, guest_timeout: float) -> None:
        path = paths.vm_action(instance_id, "detachDisk")
        body = DetachDiskIn(uri=uri, timeout=guest_timeout)
        timeout = timeouts.detach(guest_timeout)
        await self._t.call("POST", path, MessageOut, body=body, timeout=timeout)

    async def attach_nic(self, instance_id: int, nic: NicConfig) -> tuple[NicConfig, ...]:
        """The NICs the VM has once ``nic`` is hot-plugged after its last."""
        path = paths.vm_action(instance_id, "attachNic")
        body = AttachNicIn(nic=convert.nic_wire(nic))
        reply = await self._t.call("POST", path, NicsOut, body=body, timeout=timeouts.ATTACH_NIC)
        return tuple(convert.nic(n) for n in reply.nics)

    async def detach_nic(
        self, instance_id: int, mac: str, guest_timeout: float
    ) -> tuple[NicConfig, ...]:
        """The NICs the VM has once its last, ``mac``, is hot-unplugged."""
        path = paths.vm_action(instance_id, "detachNic")
        body = DetachNicIn(mac=mac, timeout=guest_timeout)
        timeout = timeouts.detach(guest_timeout)
        reply = await self._t.call("POST", path, NicsOut, body=body, timeout=timeout)
        return tuple(convert.nic(n) for n in reply.nics)

    async def backup_disk(
        self, instance_id: int, uri: str, snapshot_id: str, copy_timeout: float
    ) -> None:
        path = paths.vm_action(instance_id, "backupDisk")
        body = BackupDiskIn(uri=uri, snapshot=snapshot_id, timeout=copy_timeout)
        timeout = timeouts.backup(copy_timeout)
        await self._t.call("POST", path, MessageOut, body=body, timeout=timeout)

    async def set_firewall(self, policy: Policy) -> str:
        """Send the host's security-group policy; the version it enforces now."""
        body = firewall.policy_wire(policy)
        reply = await self._t.call("PUT", paths.FIREWALL, firewall.FirewallOut, body=body)
        return reply.version

    async def close(self) -> None:
        await self._t.close()
