"""``tashi.xmpp.control.Controller`` with a stand-in for the cluster manager's API (the live
tests use the real one): who is obeyed, the createVm a createcompute makes, and the second
answers (running, held once, failed with the reason, timed out)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from tashi.api.schemas import InstanceIn, InstanceOut
from tashi.apiclient.client import ApiClient
from tashi.domain.errors import NotFound
from tashi.xmpp.commands import CreateCompute
from tashi.xmpp.control import Controller, ControlOptions, jid_list, pairs
from tests.xmpp import seed

ISM = "ism@example.org/ism"


def out(iid: int, state: str, reason: str | None = None, host: int | None = 1) -> InstanceOut:
    return InstanceOut.model_validate(
        {
            "id": iid, "name": f"vm{iid}", "userId": 3, "user": "xmpp", "state": state,
            "hostId": host, "vmId": None, "cores": 1, "memory": 128, "cpuShare": 1024,
            "disks": [], "nics": [], "hints": {}, "groupName": None, "reason": reason,
            "createdAt": None, "stateSince": None,
        }
    )  # fmt: skip


class Api:
    """What the controller calls, answered from ``states`` (instance id -> InstanceOut)."""

    def __init__(self) -> None:
        self.created: list[InstanceIn] = []
        self.states: dict[int, InstanceOut] = {}

    async def create_vm(self, request: InstanceIn) -> InstanceOut:
        self.created.append(request)
        iid = len(self.created)
        self.states[iid] = out(iid, "Pending", host=None)
        return self.states[iid]

    async def get_instance(self, ref: int) -> InstanceOut:
        if ref not in self.states:
            raise NotFound(f"no instance {ref}")
        return self.states[ref]

    async def all_instances(self) -> list[InstanceOut]:
        return [self.states[i] for i in sorted(self.states)]


def controller(api: Api, clock: list[float]) -> tuple[Controller, list[tuple[str, dict[str, Any]]]]:
    said: list[tuple[str, dict[str, Any]]] = []
    options = ControlOptions(
        allowed=jid_list("ism@example.org, other@example.org"),
        images=pairs("imageMap", "tashi=tiny.qcow2"),
        sla_shares={"gold": 2048},
        wait_timeout=100,
    )
    made = Controller(
        cast(ApiClient, api), options, lambda to, body: said.append((to, json.loads(body))),
        clock=lambda: clock[0],
    )  # fmt: skip
    return made, said


def test_strangers_are_ignored_and_the_ism_obeyed() -> None:
    api, clock = Api(), [0.0]
    ctl, said = controller(api, clock)
    asyncio.run(ctl.handle("evil@example.org/x", seed.createcompute(1)))
    assert (said, api.created, ctl.ignored) == ([], [], 1)
    asyncio.run(ctl.handle(ISM, seed.createcompute(1)))
    assert said[0][0] == ISM and said[0][1]["status"] == "accepted"
    request = api.created[0]
    assert (request.name, request.memory, request.cpuShare) == ("tizzy1", 512, 2048)
    assert request.disks[0].uri == "tiny.qcow2"
    assert request.hints["slaLevel"] == "gold" and request.hints["ismUserId"] == "1000"


def test_an_unknown_sla_level_is_refused() -> None:
    api, clock = Api(), [0.0]
    ctl, said = controller(api, clock)
    body = seed.createcompute(1).replace('"term":"gold"', '"term":"platinum"')
    asyncio.run(ctl.handle(ISM, body))
    assert said[0][1]["status"] == "error" and "platinum" in said[0][1]["message"]
    assert api.created == []


def test_second_answers_running_held_once_failed_and_timed_out() -> None:
    api, clock = Api(), [0.0]
    ctl, said = controller(api, clock)

    async def scenario() -> None:
        for i in range(4):
            await ctl.handle(ISM, seed.createcompute(i))
        api.states[1] = out(1, "Running")
        api.states[2] = out(2, "Held", reason="no host has 512 MB free")
        api.states[3] = out(3, "Exited", reason="qemu failed")
        await ctl.check(ctl.awaited)
        await ctl.check(ctl.awaited)  # held is told once
        clock[0] = 101.0
        await ctl.check(ctl.awaited)

    asyncio.run(scenario())
    later = [d for _, d in said if d["status"] != "accepted"]
    assert [(d["id"], d["status"]) for d in later] == [
        (1, "running"), (2, "held"), (3, "failed"), (2, "failed"), (4, "failed")
    ]  # fmt: skip
    assert later[1]["reason"] == "no host has 512 MB free"
    assert later[2]["reason"] == "qemu failed"
    assert "not running after 100 s (state Held" in later[3]["reason"]
    assert ctl.awaited == []


def test_a_vanished_instance_is_a_failure() -> None:
    api, clock = Api(), [0.0]
    ctl, said = controller(api, clock)

    async def scenario() -> None:
        await ctl.handle(ISM, seed.createcompute(0))
        del api.states[1]
        await ctl.check(ctl.awaited)

    asyncio.run(scenario())
    assert said[-1][1]["status"] == "failed" and "gone" in said[-1][1]["reason"]


def test_create_compute_defaults_to_the_normal_share() -> None:
    api, clock = Api(), [0.0]
    ctl, _ = controller(api, clock)
    request = ctl.request_of(CreateCompute("a", 64, 1, "other.qcow2"))
    assert (request.cpuShare, request.disks[0].uri, request.hints) == (1024, "other.qcow2", {})


def test_a_restarted_daemon_awaits_again_what_its_predecessor_created() -> None:
    """Who awaits a VM is in its hints (``xmppReplyTo``): a new controller over the same
    cluster awaits the VMs on their way to running, not those that ran, were not its own, or
    name a JID it does not obey (any user may set a hint)."""
    api, clock = Api(), [0.0]
    first, _ = controller(api, clock)

    async def before() -> None:
        for i in range(3):
            await first.handle(ISM, seed.createcompute(i))

    asyncio.run(before())
    assert [r.hints["xmppReplyTo"] for r in api.created] == [ISM] * 3
    for iid, request in enumerate(api.created, start=1):
        hints = {k: v for k, v in request.hints.items() if v is not None}
        api.states[iid] = api.states[iid].model_copy(update={"hints": hints, "name": request.name})
    api.states[2] = api.states[2].model_copy(update={"state": "Running"})  # told already
    api.states[4] = out(4, "Pending")  # not made by the daemon: no xmppReplyTo
    api.states[5] = out(5, "Pending").model_copy(update={"hints": {"xmppReplyTo": "x@evil.org"}})
    again, said = controller(api, clock)

    async def after() -> int:
        found = await again.recover()
        api.states[1] = api.states[1].model_copy(update={"state": "Running"})
        await again.check(again.awaited)
        return found

    assert asyncio.run(after()) == 2
    assert again.awaited == [3]
    assert [(to, d["id"], d["status"], d["hostname"]) for to, d in said] == [
        (ISM, 1, "running", "tizzy0")
    ]
    assert said[0][1]["resourceId"].endswith("0")
