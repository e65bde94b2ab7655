"""What every EC2 action handler gets: the services, the caller, the site's EC2 settings.

``Ec2Context`` is built once by the composition root (``daemons/cm.py``, tests) from
``[Ec2]`` and ``[InstanceTypes]``; a bad line there stops the cluster manager at start-up.
``Handler`` is the shape of every action: the caller and the request's parameters (as boto3
users write them, ``protocol.parse``) in, the answer's members (``protocol.render``) out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tashi.clustermanager.service import ClusterService
from tashi.config.ec2 import Ec2Settings, InstanceTypesSettings
from tashi.domain import instancetypes
from tashi.domain.errors import InvalidInput
from tashi.domain.instancetypes import InstanceType
from tashi.domain.models import Principal
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.instancecache import InstanceCache
from tashi.frontends.ec2.instanceviews import Defaults, Terminated


@dataclass(frozen=True, slots=True)
class Ec2Context:
    service: ClusterService
    region: str
    zones: tuple[str, ...]
    types: Mapping[str, InstanceType]
    default_type: str
    endpoint: str  # host[:port] of the EC2 API, as DescribeRegions tells it
    terminated: Terminated = field(default_factory=Terminated)
    #: instances as DescribeInstances last wrote them (``instancecache``)
    written: InstanceCache = field(default_factory=InstanceCache)
    #: one RunInstances at a time per (user, ClientToken): a retry waits for the first
    launching: dict[tuple[int, str], asyncio.Lock] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        service: ClusterService,
        ec2: Ec2Settings,
        types: InstanceTypesSettings,
        endpoint: str,
    ) -> Ec2Context:
        """From the settings; ``InvalidInput`` naming the bad line."""
        table = instancetypes.table(types.entries)
        zones = tuple(z.strip() for z in ec2.zones.split(",") if z.strip())
        if not zones:
            raise InvalidInput("[Ec2] zones names no zone")
        if ec2.default_instance_type not in table:
            raise InvalidInput(
                f"[Ec2] defaultInstanceType = {ec2.default_instance_type} is not in [InstanceTypes]"
            )
        return cls(service, ec2.region, zones, table, ec2.default_instance_type, endpoint)

    @property
    def defaults(self) -> Defaults:
        return Defaults(zone=self.zones[0], instance_type=self.default_type)

    def instance_type(self, name: str | None) -> InstanceType:
        found = self.types.get(name or self.default_type)
        if found is None:
            raise Ec2Error(
                "InvalidParameterValue",
                f"Invalid value '{name}' for InstanceType. DescribeInstanceTypes lists the"
                " types of this cluster.",
            )
        return found


Params = dict[str, Any]
Result = Mapping[str, Any]
Handler = Callable[[Ec2Context, Principal, Params], Awaitable[Result]]
