"""``Recorder``: the fake of the hook family (``hooks.py``), for tests and for trying a
scheduler's hook wiring (``hook1 = Recorder``). It changes nothing; it remembers what it was
told, keeping each instance's record once however often it is told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tashi.api.schemas import HostOut, InstanceOut
from tashi.scheduler.hooks import HookContext, InstanceHook


@dataclass
class Recorder:
    name: str = "Recorder"
    started: bool = False
    closed: bool = False
    #: instance id -> the host it was last to be activated on
    placed: dict[int, str] = field(default_factory=dict)
    destroyed: set[int] = field(default_factory=set)
    #: instance id -> the MACs of its NICs when it was last said to have changed them
    renicked: dict[int, list[str]] = field(default_factory=dict)

    async def start(self, instances: Sequence[InstanceOut]) -> None:
        self.started = True
        self.placed = {i.id: str(i.hostId) for i in instances if i.hostId is not None}

    async def before_activation(self, instance: InstanceOut, host: HostOut) -> InstanceOut:
        self.placed[instance.id] = host.name
        return instance

    async def nics_changed(self, instance: InstanceOut) -> None:
        self.renicked[instance.id] = [nic.mac for nic in instance.nics]

    async def after_destroy(self, instance: InstanceOut) -> None:
        self.placed.pop(instance.id, None)
        self.destroyed.add(instance.id)

    async def close(self) -> None:
        self.closed = True


def create(context: HookContext) -> InstanceHook:
    return Recorder()
