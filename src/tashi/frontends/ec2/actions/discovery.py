"""What tools ask before anything else: the account's attributes, the regions, the zones and
the instance types.

One region (``[Ec2] region``) with its zones (``[Ec2] zones``); the account's platform is
``VPC`` with no default VPC, which is what tools expect of an account made since 2013. Instance
types come from ``[InstanceTypes]`` (``domain/instancetypes.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tashi.domain.instancetypes import InstanceType
from tashi.domain.models import Principal
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page_answer

#: DescribeAccountAttributes: name -> values
ACCOUNT: Mapping[str, tuple[str, ...]] = {
    "supported-platforms": ("VPC",),
    "default-vpc": ("none",),
    "max-instances": ("1000",),
    "vpc-max-security-groups-per-interface": ("5",),
    "max-elastic-ips": ("0",),
    "vpc-max-elastic-ips": ("0",),
}
AVAILABLE = "opt-in-not-required"


async def describe_account_attributes(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    wanted = params.get("AttributeNames") or list(ACCOUNT)
    for name in wanted:
        if name not in ACCOUNT:
            raise Ec2Error("InvalidParameterValue", f"Invalid attribute name: {name}")
    return {
        "AccountAttributes": [
            {
                "AttributeName": name,
                "AttributeValues": [{"AttributeValue": v} for v in ACCOUNT[name]],
            }
            for name in wanted
        ]
    }


async def describe_regions(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    region = {"RegionName": ctx.region, "Endpoint": ctx.endpoint, "OptInStatus": AVAILABLE}
    for name in params.get("RegionNames") or ():
        if name != ctx.region:
            raise Ec2Error("InvalidParameterValue", f"Invalid region: {name}")
    matches = compile_filters(
        params.get("Filters"), ("endpoint", "region-name", "opt-in-status"), "DescribeRegions"
    )
    values = {
        "endpoint": [ctx.endpoint],
        "region-name": [ctx.region],
        "opt-in-status": [AVAILABLE],
    }
    return {"Regions": [region] if matches(values) else []}


def _zone(ctx: Ec2Context, index: int, name: str) -> dict[str, Any]:
    return {
        "ZoneName": name,
        "ZoneId": f"{ctx.region}-az{index + 1}",
        "State": "available",
        "RegionName": ctx.region,
        "OptInStatus": AVAILABLE,
        "ZoneType": "availability-zone",
        "GroupName": ctx.region,
        "NetworkBorderGroup": ctx.region,
        "Messages": [],
    }


async def describe_availability_zones(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    zones = [_zone(ctx, i, name) for i, name in enumerate(ctx.zones)]
    names = params.get("ZoneNames") or []
    ids = params.get("ZoneIds") or []
    for name in names:
        if name not in ctx.zones:
            raise Ec2Error(
                "InvalidParameterValue", f"The availability zone '{name}' does not exist."
            )
    for zone_id in ids:
        if zone_id not in {z["ZoneId"] for z in zones}:
            raise Ec2Error("InvalidParameterValue", f"The zone ID '{zone_id}' does not exist.")
    matches = compile_filters(
        params.get("Filters"),
        (
            "zone-name",
            "zone-id",
            "state",
            "region-name",
            "zone-type",
            "group-name",
            "opt-in-status",
        ),
        "DescribeAvailabilityZones",
    )
    chosen = []
    for z in zones:
        if (names and z["ZoneName"] not in names) or (ids and z["ZoneId"] not in ids):
            continue
        values = {
            "zone-name": [z["ZoneName"]],
            "zone-id": [z["ZoneId"]],
            "state": ["available"],
            "region-name": [ctx.region],
            "zone-type": ["availability-zone"],
            "group-name": [ctx.region],
            "opt-in-status": [AVAILABLE],
        }
        if matches(values):
            chosen.append(z)
    return {"AvailabilityZones": chosen}


def _instance_type(t: InstanceType) -> dict[str, Any]:
    return {
        "InstanceType": t.name,
        "CurrentGeneration": True,
        "FreeTierEligible": False,
        "SupportedUsageClasses": ["on-demand"],
        "SupportedRootDeviceTypes": ["ebs"],
        "SupportedVirtualizationTypes": ["hvm"],
        "BareMetal": False,
        "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
        "VCpuInfo": {"DefaultVCpus": t.cores, "DefaultCores": t.cores, "DefaultThreadsPerCore": 1},
        "MemoryInfo": {"SizeInMiB": t.memory},
        "InstanceStorageSupported": False,
        "HibernationSupported": False,
        "BurstablePerformanceSupported": False,
        "AutoRecoverySupported": True,
    }


async def describe_instance_types(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    asked = params.get("InstanceTypes") or []
    for name in asked:
        if name not in ctx.types:
            raise Ec2Error(
                "InvalidInstanceType",
                f"The following supplied instance types do not exist: [{name}]",
            )
    matches = compile_filters(
        params.get("Filters"),
        (
            "instance-type",
            "vcpu-info.default-vcpus",
            "memory-info.size-in-mib",
            "current-generation",
            "processor-info.supported-architecture",
        ),
        "DescribeInstanceTypes",
    )
    chosen = [
        t
        for name, t in sorted(ctx.types.items())
        if (not asked or name in asked)
        and matches(
            {
                "instance-type": [name],
                "vcpu-info.default-vcpus": [str(t.cores)],
                "memory-info.size-in-mib": [str(t.memory)],
                "current-generation": ["true"],
                "processor-info.supported-architecture": ["x86_64"],
            }
        )
    ]
    return page_answer(
        "InstanceTypes",
        chosen,
        lambda t: t.name,
        params,
        listing="instance-types",
        minimum=5,
        maximum=100,
        render=lambda shown: [_instance_type(t) for t in shown],
    )


HANDLERS: Mapping[str, Handler] = {
    "DescribeAccountAttributes": describe_account_attributes,
    "DescribeRegions": describe_regions,
    "DescribeAvailabilityZones": describe_availability_zones,
    "DescribeInstanceTypes": describe_instance_types,
}
