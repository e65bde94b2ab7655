"""DescribeInstanceAttribute and ModifyInstanceAttribute.

Attributes Tashi keeps: ``instanceType`` (changed only while the instance is stopped: it starts
with the new type's cores and memory), ``userData`` (changed only while stopped, as AWS; what
the guest's metadata serves from its next start), ``disableApiTermination`` (then
``TerminateInstances`` refuses it with ``OperationNotPermitted``). Read-only ones:
``rootDeviceName`` (``/dev/vda``), ``instanceInitiatedShutdownBehavior`` (``stop`` for an
instance whose disks are persistent, ``terminate`` otherwise: a Tashi VM that powers itself off
is gone), ``groupSet``, ``sourceDestCheck``, ``ebsOptimized``, ``enaSupport``. Any other is
``InvalidParameterValue``; changing a read-only one is ``UnsupportedOperation``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from tashi.domain import launches
from tashi.domain.errors import InvalidState
from tashi.domain.models import Instance, Principal
from tashi.domain.states import InstanceState
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.actions.instances import mine
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.instanceviews import launch_of

#: the ``Attribute`` names -> the member of the answer that holds it
ANSWERS: Mapping[str, str] = {
    "instanceType": "InstanceType",
    "userData": "UserData",
    "disableApiTermination": "DisableApiTermination",
    "rootDeviceName": "RootDeviceName",
    "instanceInitiatedShutdownBehavior": "InstanceInitiatedShutdownBehavior",
    "groupSet": "Groups",
    "sourceDestCheck": "SourceDestCheck",
    "ebsOptimized": "EbsOptimized",
    "enaSupport": "EnaSupport",
    "blockDeviceMapping": "BlockDeviceMappings",
}


def _value(ctx: Ec2Context, inst: Instance, attribute: str) -> Any:
    launch = launch_of(inst, ctx.defaults)
    if attribute == "instanceType":
        return {"Value": launch.instance_type}
    if attribute == "userData":
        return {"Value": launch.user_data} if launch.user_data else {}
    if attribute == "disableApiTermination":
        return {"Value": launch.no_terminate}
    if attribute == "rootDeviceName":
        return {"Value": "/dev/vda"}
    if attribute == "instanceInitiatedShutdownBehavior":
        kept = all(d.persistent for d in inst.disks)
        return {"Value": "stop" if kept else "terminate"}
    if attribute == "groupSet":
        return []
    if attribute == "blockDeviceMapping":
        return [
            {"DeviceName": f"/dev/vd{chr(ord('a') + n)}", "Ebs": {"Status": "attached"}}
            for n, _ in enumerate(inst.disks)
        ]
    return {"Value": attribute == "sourceDestCheck"}


async def describe_instance_attribute(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    attribute = params["Attribute"]
    if attribute not in ANSWERS:
        raise Ec2Error(
            "InvalidParameterValue", f"Value ({attribute}) for parameter attribute is invalid."
        )
    [inst] = await mine(ctx, caller, {"InstanceIds": [params["InstanceId"]]})
    return {
        "InstanceId": ids.instance_id(inst.id),
        ANSWERS[attribute]: _value(ctx, inst, attribute),
    }


def _wanted(params: Params) -> dict[str, Any]:
    """What the request changes: attribute name -> new value (either form AWS accepts)."""
    wanted: dict[str, Any] = {}
    for name, member in (
        ("instanceType", "InstanceType"),
        ("userData", "UserData"),
        ("disableApiTermination", "DisableApiTermination"),
    ):
        if params.get(member) is not None:
            wanted[name] = params[member].get("Value")
    if params.get("Attribute"):
        wanted[params["Attribute"]] = params.get("Value")
    for member in (
        "SourceDestCheck",
        "EbsOptimized",
        "EnaSupport",
        "Groups",
        "Kernel",
        "Ramdisk",
        "InstanceInitiatedShutdownBehavior",
        "BlockDeviceMappings",
        "SriovNetSupport",
        "DisableApiStop",
    ):
        if params.get(member):
            raise Ec2Error(
                "UnsupportedOperation", f"Tashi does not change the attribute {member} yet."
            )
    if len(wanted) != 1:
        raise Ec2Error("InvalidParameterCombination", "Give exactly one attribute to modify.")
    return wanted


async def modify_instance_attribute(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    [inst] = await mine(ctx, caller, {"InstanceIds": [params["InstanceId"]]})
    [(attribute, value)] = _wanted(params).items()
    stopped = inst.state is InstanceState.Stopped
    try:
        if attribute == "instanceType":
            kind = ctx.instance_type(str(value))
            if not stopped:
                raise _not_stopped(inst, attribute)
            await ctx.service.attributes.modify(
                caller, str(inst.id), own={launches.TYPE: kind.name}, size=(kind.cores, kind.memory)
            )
        elif attribute == "userData":
            if not stopped:
                raise _not_stopped(inst, attribute)
            text = value if isinstance(value, str) else base64.b64encode(value or b"").decode()
            await ctx.service.attributes.modify(
                caller, str(inst.id), own={launches.USER_DATA: text or None}
            )
        elif attribute == "disableApiTermination":
            on = value if isinstance(value, bool) else str(value).lower() == "true"
            await ctx.service.attributes.modify(
                caller, str(inst.id), own={launches.NO_TERMINATE: "true" if on else None}
            )
        elif attribute in ANSWERS:
            raise Ec2Error("UnsupportedOperation", f"Tashi does not change {attribute}.")
        else:
            raise Ec2Error(
                "InvalidParameterValue", f"Value ({attribute}) for parameter attribute is invalid."
            )
    except InvalidState as exc:
        raise _not_stopped(inst, attribute) from exc
    return {}


def _not_stopped(inst: Instance, attribute: str) -> Ec2Error:
    return Ec2Error(
        "IncorrectInstanceState",
        f"The instance '{ids.instance_id(inst.id)}' is not in the 'stopped' state: its"
        f" {attribute} changes only then.",
    )


HANDLERS: Mapping[str, Handler] = {
    "DescribeInstanceAttribute": describe_instance_attribute,
    "ModifyInstanceAttribute": modify_instance_attribute,
}
