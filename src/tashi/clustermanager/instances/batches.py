"""``destroyMany`` and ``shutdownMany``, done server-side as one request.

The original client looped over ``getInstances`` and sent one RPC per VM; here one request
selects the instances (``basename-<digits>`` or explicit ids) and acts on each. Each instance is
its own compare-and-swap, so one that fails (for example because it changed state meanwhile)
is reported and does not stop the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tashi.clustermanager.instances.service import InstanceService
from tashi.domain.errors import InvalidInput, NotFound, TashiError
from tashi.domain.ids import InstanceId
from tashi.domain.models import Instance, Principal
from tashi.domain.operations import BatchSelect, InstanceQuery


@dataclass(slots=True)
class BatchResult:
    done: list[Instance] = field(default_factory=list)  # acted on; their state now
    removed: list[InstanceId] = field(default_factory=list)  # gone at once
    failed: list[tuple[Instance, TashiError]] = field(default_factory=list)


class BatchService:
    def __init__(self, instances: InstanceService, max_batch: int) -> None:
        self._instances = instances
        self._max = max_batch

    async def select(self, caller: Principal, which: BatchSelect) -> list[Instance]:
        if (which.basename is None) == (which.ids is None):
            raise InvalidInput("name either a basename or a list of instance ids")
        if which.ids is not None:
            if len(which.ids) > self._max:
                raise InvalidInput(f"at most {self._max} instances per request (maxBatch)")
            return [await self._instances.get(caller, str(i)) for i in which.ids]
        basename = which.basename or ""
        pattern = re.compile(rf"^{re.escape(basename)}-\d+$")
        owned = await self._instances.find(caller, InstanceQuery(name_prefix=f"{basename}-"))
        chosen = [i for i in owned if pattern.match(i.name)]
        if not chosen:
            raise NotFound(f"{basename!r} is an unused basename")
        return chosen

    async def destroy_many(self, caller: Principal, which: BatchSelect) -> BatchResult:
        result = BatchResult()
        for inst in await self.select(caller, which):
            try:
                after = await self._instances.destroy_instance(caller, inst)
            except TashiError as exc:
                result.failed.append((inst, exc))
                continue
            if after is None:
                result.removed.append(inst.id)
            else:
                result.done.append(after)
        return result

    async def shutdown_many(self, caller: Principal, which: BatchSelect) -> BatchResult:
        result = BatchResult()
        for inst in await self.select(caller, which):
            try:
                result.done.append(await self._instances.shutdown_instance(caller, inst))
            except TashiError as exc:
                result.failed.append((inst, exc))
        return result
