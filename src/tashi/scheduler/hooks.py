"""The hook contract: site code the scheduler runs around placement.

The original Tashi's ``InstanceHook`` (``hook1 = tashi.agents.DhcpDns`` in ``[Primitive]``) had
two calls, ``preCreate`` and ``postDestroy``. Ours keeps them, async, plus ``start``/``close`` so
that a hook can bring its backend back in step with the cluster after the scheduler restarts
(the original kept its allocations in memory and handed addresses out twice after a restart),
and ``nics_changed`` for the NICs a running instance gains or loses.

Rules every hook follows (the contract test suite checks them over every hook):

- ``before_activation`` runs after the policy chose a host and before the scheduler calls
  ``activateVm``. It may change the instance through the cluster manager (for example record
  an address on a NIC) using ``HookContext.http``; it returns the instance as it now is. If it
  raises ``TashiError`` the instance is not activated: the scheduler holds it with the message
  as its reason and retries later, so the hook must be idempotent (a retry of the same instance
  must not allocate a second address).
- ``after_destroy`` runs once the scheduler sees that an instance it knew is gone (removed or
  Exited). It must tolerate being called for an instance it never saw, and being called twice.
- ``nics_changed`` runs when the scheduler sees that the NICs of a placed instance (Running or
  Paused) changed since it last saw the instance: a NIC hot-plugged in or taken out
  (``clustermanager/instances/nics.py``). It may change the instance as ``before_activation``
  does, and must be as idempotent: if it raises ``TashiError`` the scheduler logs it and calls
  it again in its next round, with the instance as it then is.
- ``start`` runs once before the first placement, with every instance the cluster knows;
  ``close`` once when the scheduler stops. Neither may block the event loop for long.
- Hooks never raise anything but ``TashiError`` subclasses for expected failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from tashi.api.schemas import HostOut, InstanceOut


@dataclass(frozen=True, slots=True)
class HookContext:
    """What a hook gets from the scheduler.

    ``http`` is an authenticated client of the cluster manager's public API (base URL set, the
    agent's bearer token attached); ``options`` are the hook's own config section as strings
    (e.g. ``[DhcpDns]`` for the DHCP/DNS hook)."""

    http: httpx.AsyncClient
    options: dict[str, str]


class InstanceHook(Protocol):
    """Site code around placement; see the module docstring for the rules."""

    name: str

    async def start(self, instances: Sequence[InstanceOut]) -> None: ...

    async def before_activation(self, instance: InstanceOut, host: HostOut) -> InstanceOut: ...

    async def nics_changed(self, instance: InstanceOut) -> None: ...

    async def after_destroy(self, instance: InstanceOut) -> None: ...

    async def close(self) -> None: ...
