"""An instance's life after launch: StopInstances, StartInstances, RebootInstances,
GetConsoleOutput, DescribeInstanceStatus, DescribeInstanceAttribute, ModifyInstanceAttribute.

Stop powers the guest off and keeps the instance (``Stopped``) with its root disk, its own
persistent copy of the image (``RunInstances`` makes it when the instance is first placed), to
start on any host; ``Force`` pulls the plug at once. Reboot resets the VM. The console output is
the last 64 KB of the VM's serial console, base64-encoded as AWS's.

"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from tashi.domain.errors import InvalidState
from tashi.domain.models import Instance, Principal
from tashi.domain.states import InstanceState
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.actions.instances import mine, visible
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page_answer
from tashi.frontends.ec2.instanceviews import STATES, state

S = InstanceState
CONSOLE_KB = 64


def _incorrect(inst: Instance, doing: str) -> Ec2Error:
    name = STATES[inst.state][1]
    return Ec2Error(
        "IncorrectInstanceState",
        f"The instance '{ids.instance_id(inst.id)}' is not in a state from which it can be"
        f" {doing} (it is {name}).",
    )


async def _each(
    targets: list[Instance],
    act: Callable[[Instance], Awaitable[Instance | None]],
    doing: str,
) -> list[dict[str, Any]]:
    """``act`` on every target at once; ``IncorrectInstanceState`` if one may not (before any
    other error: that is the caller's to fix)."""

    async def one(inst: Instance) -> dict[str, Any]:
        try:
            after = await act(inst)
        except InvalidState as exc:
            raise _incorrect(inst, doing) from exc
        now = after.state if after is not None else inst.state
        return {
            "InstanceId": ids.instance_id(inst.id),
            "PreviousState": state(inst.state),
            "CurrentState": state(now),
        }

    done = await asyncio.gather(*(one(i) for i in targets), return_exceptions=True)
    for result in done:
        if isinstance(result, BaseException):
            raise result
    return [r for r in done if not isinstance(r, BaseException)]


async def stop_instances(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    targets = await mine(ctx, caller, params)
    force = bool(params.get("Force"))
    instances = ctx.service.instances

    async def stop(inst: Instance) -> Instance | None:
        if inst.state in (S.Stopped, S.Stopping):
            return inst  # AWS: stopping a stopped instance is no error
        return await instances.stop_vm(caller, str(inst.id), force=force)

    return {"StoppingInstances": await _each(targets, stop, "stopped")}


async def start_instances(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    targets = await mine(ctx, caller, params)
    instances = ctx.service.instances

    async def start(inst: Instance) -> Instance | None:
        if inst.state is not S.Stopped and STATES[inst.state][1] in ("pending", "running"):
            return inst  # already started or starting
        return await instances.start_vm(caller, str(inst.id))

    return {"StartingInstances": await _each(targets, start, "started")}


async def reboot_instances(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    targets = await mine(ctx, caller, params)
    for inst in targets:
        if inst.state not in (S.Running, S.Paused):
            raise _incorrect(inst, "rebooted")
    await asyncio.gather(
        *(ctx.service.instances.vmm_call(caller, str(i.id), "reset") for i in targets)
    )
    return {}


async def get_console_output(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    [inst] = await mine(ctx, caller, {"InstanceIds": [params["InstanceId"]]})
    text = ""
    if inst.state in (S.Running, S.Paused):
        try:
            text = await ctx.service.instances.vmm_call(
                caller, str(inst.id), f"console:{CONSOLE_KB}"
            )
        except InvalidState:
            text = ""  # it stopped meanwhile: AWS answers an empty output then
    return {
        "InstanceId": ids.instance_id(inst.id),
        "Timestamp": datetime.now(UTC),
        "Output": base64.b64encode(text.encode("utf-8", "replace")).decode(),
    }


_STATUS_FILTERS = (
    "instance-state-name",
    "instance-state-code",
    "availability-zone",
    "instance-status.status",
    "system-status.status",
)


def _status(iid: int, shown: dict[str, Any], zone: str) -> dict[str, Any]:
    ok = "ok" if shown["Name"] == "running" else "not-applicable"
    if shown["Name"] == "pending":
        ok = "initializing"
    details = [{"Name": "reachability", "Status": "passed" if ok == "ok" else ok}]
    return {
        "InstanceId": ids.instance_id(iid),
        "AvailabilityZone": zone,
        "InstanceState": shown,
        "InstanceStatus": {"Status": ok, "Details": details},
        "SystemStatus": {"Status": ok, "Details": details},
    }


async def describe_instance_status(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    zone = ctx.zones[0]
    owner = None if caller.is_trusted else caller.user_id
    known: dict[int, dict[str, Any]] = {
        i.id: _status(i.id, state(i.state), zone) for i in await visible(ctx, caller)
    }
    for gone in ctx.terminated.of(owner):
        known.setdefault(gone.inst.id, _status(gone.inst.id, state(gone.state), zone))
    wanted = [ids.parse_instance(i) for i in params.get("InstanceIds") or []]
    missing = [ids.instance_id(i) for i in wanted if i not in known]
    if missing:
        raise Ec2Error(
            "InvalidInstanceID.NotFound", f"The instance ID '{', '.join(missing)}' does not exist"
        )
    chosen = [known[i] for i in sorted(known) if not wanted or i in wanted]
    if not params.get("IncludeAllInstances"):
        chosen = [s for s in chosen if s["InstanceState"]["Name"] == "running"]
    matches = compile_filters(params.get("Filters"), _STATUS_FILTERS, "DescribeInstanceStatus")
    chosen = [
        s
        for s in chosen
        if matches(
            {
                "instance-state-name": [s["InstanceState"]["Name"]],
                "instance-state-code": [str(s["InstanceState"]["Code"])],
                "availability-zone": [zone],
                "instance-status.status": [s["InstanceStatus"]["Status"]],
                "system-status.status": [s["SystemStatus"]["Status"]],
            }
        )
    ]
    return page_answer(
        "InstanceStatuses",
        chosen,
        lambda s: str(s["InstanceId"]),
        params,
        listing="instance-status",
        minimum=5,
        maximum=1000,
    )


HANDLERS: Mapping[str, Handler] = {
    "StopInstances": stop_instances,
    "StartInstances": start_instances,
    "RebootInstances": reboot_instances,
    "GetConsoleOutput": get_console_output,
    "DescribeInstanceStatus": describe_instance_status,
}
