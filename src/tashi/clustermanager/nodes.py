"""The cluster manager's port to node managers.

Operations on a VM that exists on a host (start, shut down, pause, suspend, migrate, VMM calls)
are carried out by that host's node manager. Services call this port after they have checked
permissions and the state table, and before they save the transitional state. ``NoNodeManagers``
is the port of a cluster manager that has no node managers to talk to: every call says so with
``Unavailable`` and nothing changes. The node-manager contract (``nodeapi``) replaces it.
"""

from __future__ import annotations

from typing import Protocol

from tashi.domain.errors import Unavailable
from tashi.domain.models import Host, Instance


class NodeGateway(Protocol):
    async def instantiate(self, host: Host, instance: Instance) -> int:
        """Start ``instance`` on ``host``; return its VM id."""

    async def shutdown(self, host: Host, instance: Instance) -> None: ...

    async def destroy(self, host: Host, instance: Instance) -> None: ...

    async def pause(self, host: Host, instance: Instance) -> None: ...

    async def unpause(self, host: Host, instance: Instance) -> None: ...

    async def suspend(self, host: Host, instance: Instance) -> None: ...

    async def resume(self, host: Host, instance: Instance) -> int: ...

    async def migrate(self, source: Host, target: Host, instance: Instance) -> None: ...

    async def vmm_call(self, host: Host, instance: Instance, arg: str) -> str: ...


class NoNodeManagers:
    """A gateway with no node managers behind it: every operation is unavailable."""

    def _refuse(self, what: str, instance: Instance) -> Unavailable:
        return Unavailable(
            f"cannot {what} {instance.name!r}: this cluster manager has no node manager to do it"
        )

    async def instantiate(self, host: Host, instance: Instance) -> int:
        raise self._refuse("start", instance)

    async def shutdown(self, host: Host, instance: Instance) -> None:
        raise self._refuse("shut down", instance)

    async def destroy(self, host: Host, instance: Instance) -> None:
        raise self._refuse("destroy", instance)

    async def pause(self, host: Host, instance: Instance) -> None:
        raise self._refuse("pause", instance)

    async def unpause(self, host: Host, instance: Instance) -> None:
        raise self._refuse("unpause", instance)

    async def suspend(self, host: Host, instance: Instance) -> None:
        raise self._refuse("suspend", instance)

    async def resume(self, host: Host, instance: Instance) -> int:
        raise self._refuse("resume", instance)

    async def migrate(self, source: Host, target: Host, instance: Instance) -> None:
        raise self._refuse("migrate", instance)

    async def vmm_call(self, host: Host, instance: Instance, arg: str) -> str:
        raise self._refuse("pass a VMM call to", instance)
