"""The cluster manager's port to node managers.

Operations on a VM that exists on a host (start, shut down, pause, suspend, migrate, VMM calls)
are carried out by that host's node manager. Services call this port after they have checked
permissions and the state table. ``NoNodeManagers`` is the port of a cluster manager without
node managers (unit tests of the control plane): every call says so with ``Unavailable``;
``gateway.HttpNodeGateway`` is the real one, over ``tashi.nodeapi``.
"""

from __future__ import annotations

from typing import Protocol

from tashi.domain.errors import Unavailable
from tashi.domain.firewall import Policy
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import DiskConfig, Host, Instance, NicConfig
from tashi.domain.nodes import Grant, Ticket, Transfer, VmStatus


class NodeGateway(Protocol):
    async def alive(self, host: Host) -> bool:
        """Whether the host's node manager answers (never raises)."""

    async def instantiate(self, host: Host, instance: Instance) -> int:
        """Start ``instance`` on ``host``; return its VM id once the process runs."""

    async def resume(self, host: Host, instance: Instance, source: str) -> int:
        """Start restoring ``instance`` from suspend file ``source``; ``started`` follows."""

    async def shutdown(self, host: Host, instance: Instance) -> None: ...

    async def destroy(self, host: Host, instance: Instance) -> None:
        """Kill the VM and wait until it is gone (succeeds if it is gone already)."""

    async def pause(self, host: Host, instance: Instance) -> None: ...

    async def unpause(self, host: Host, instance: Instance) -> None: ...

    async def suspend(self, host: Host, instance: Instance, target: str) -> None:
        """Start saving the VM to ``target``; ``suspended``/``suspendFailed`` follows."""

    async def prepare_incoming(self, host: Host, instance: Instance) -> Ticket: ...

    async def migrate(
        self, source: Host, instance: Instance, ticket: Ticket, timeout: float
    ) -> Transfer: ...

    async def finish_incoming(self, host: Host, instance: Instance) -> int: ...

    async def grant(self, host: Host, subject: HostId) -> Grant:
        """What ``host``'s node manager, as a witness, last granted host ``subject``
        (ADR 0010)."""
        ...

    async def vms(self, host: Host) -> dict[InstanceId, VmStatus]:
        """Every VM the host's node manager runs, by instance (state: the values of
        ``tashi.vmm.base.VmState``)."""
        ...

    async def vmm_call(self, host: Host, instance: Instance, op: str, arg: str) -> str: ...

    async def set_cpu_share(self, host: Host, instance: Instance, share: int) -> None: ...

    async def attach_disk(self, host: Host, instance: Instance, disk: DiskConfig) -> None:
        """Hot-plug the volume ``disk`` into the instance's running VM."""

    async def detach_disk(self, host: Host, instance: Instance, uri: str, timeout: float) -> None:
        """Hot-unplug the volume ``uri`` once the guest lets it go (``InvalidState`` if it has
        not after ``timeout`` seconds). No error if the VM does not have it."""

    async def attach_nic(self, host: Host, instance: Instance, nic: NicConfig) -> None:
        """Hot-plug ``nic`` into the instance's running VM after its last NIC (a NIC it has
        already: no change)."""

    async def detach_nic(self, host: Host, instance: Instance, mac: str, timeout: float) -> None:
        """Hot-unplug the VM's last NIC ``mac`` once the guest lets it go (``InvalidState`` if
        it has not after ``timeout`` seconds). No error if the VM does not have it."""

    async def backup_disk(
        self, host: Host, instance: Instance, uri: str, snapshot_id: str, timeout: float
    ) -> None:
        """Copy the running VM's persistent disk ``uri`` as it is into the snapshot's file."""

    async def set_firewall(self, host: Host, policy: Policy) -> str:
        """Have the host enforce ``policy`` on its VMs' taps (``secgroups/sync.py``); the
        version it enforces now."""
        ...

    async def sweep(self) -> None:
        """Close what is kept open to node managers that have not been called for a while."""

    async def close(self) -> None: ...


class NoNodeManagers:
    """A gateway with no node managers behind it: every operation is unavailable."""

    def _refuse(self, what: str, instance: Instance) -> Unavailable:
        return Unavailable(
            f"cannot {what} {instance.name!r}: this cluster manager has no node manager to do it"
        )

    async def alive(self, host: Host) -> bool:
        return False

    async def instantiate(self, host: Host, instance: Instance) -> int:
        raise self._refuse("start", instance)

    async def resume(self, host: Host, instance: Instance, source: str) -> int:
        raise self._refuse("resume", instance)

    async def shutdown(self, host: Host, instance: Instance) -> None:
        raise self._refuse("shut down", instance)

    async def destroy(self, host: Host, instance: Instance) -> None:
        raise self._refuse("destroy", instance)

    async def pause(self, host: Host, instance: Instance) -> None:
        raise self._refuse("pause", instance)

    async def unpause(self, host: Host, instance: Instance) -> None:
        raise self._refuse("unpause", instance)

    async def suspend(self, host: Host, instance: Instance, target: str) -> None:
        raise self._refuse("suspend", instance)

    async def prepare_incoming(self, host: Host, instance: Instance) -> Ticket:
        raise self._refuse("migrate", instance)

    async def migrate(
        self, source: Host, instance: Instance, ticket: Ticket, timeout: float
    ) -> Transfer:
        raise self._refuse("migrate", instance)

    async def finish_incoming(self, host: Host, instance: Instance) -> int:
        raise self._refuse("migrate", instance)

    async def grant(self, host: Host, subject: HostId) -> Grant:
        raise Unavailable(f"cannot ask host {host.name!r}: no node managers are connected")

    async def vms(self, host: Host) -> dict[InstanceId, VmStatus]:
        raise Unavailable(f"cannot ask host {host.name!r}: no node managers are connected")

    async def vmm_call(self, host: Host, instance: Instance, op: str, arg: str) -> str:
        raise self._refuse("pass a VMM call to", instance)

    async def set_cpu_share(self, host: Host, instance: Instance, share: int) -> None:
        raise self._refuse("change the CPU share of", instance)

    async def attach_disk(self, host: Host, instance: Instance, disk: DiskConfig) -> None:
        raise self._refuse("attach a volume to", instance)

    async def detach_disk(self, host: Host, instance: Instance, uri: str, timeout: float) -> None:
        raise self._refuse("detach a volume from", instance)

    async def attach_nic(self, host: Host, instance: Instance, nic: NicConfig) -> None:
        raise self._refuse("attach a NIC to", instance)

    async def detach_nic(self, host: Host, instance: Instance, mac: str, timeout: float) -> None:
        raise self._refuse("detach a NIC from", instance)

    async def backup_disk(
        self, host: Host, instance: Instance, uri: str, snapshot_id: str, timeout: float
    ) -> None:
        raise self._refuse("copy a disk of", instance)

    async def set_firewall(self, host: Host, policy: Policy) -> str:
        raise Unavailable(f"cannot reach host {host.name!r}: no node managers are connected")

    async def sweep(self) -> None:
        return None

    async def close(self) -> None:
        """Nothing to release."""
