"""holdVm through the real HTTP app: Pending -> Held with a reason, Held -> Held with a new one,
agents and admins only; the reason shows in getInstances and in the history; a refused claim
answers 409 ``insufficient_resources``."""

from __future__ import annotations

from typing import Any

from tashi.domain.ids import HostId
from tests.api.conftest import Api
from tests.api.test_instances import create


def hold(api: Api, who: dict[str, str], ref: str, reason: str) -> Any:
    return api.call("POST", f"/v1/instances/{ref}/hold", who, json={"reason": reason})


def test_a_pending_instance_is_held_with_its_reason(api: Api) -> None:
    agent = api.user("sched", role="agent")
    alice = api.user("alice")
    create(api, alice, "vm")
    reply = hold(api, agent, "vm", "no host has 4096 MB free")
    assert reply.status_code == 200, reply.text
    assert (reply.json()["state"], reply.json()["reason"]) == ("Held", "no host has 4096 MB free")
    listed = api.call("GET", "/v1/instances", alice).json()
    assert [(i["state"], i["reason"]) for i in listed] == [("Held", "no host has 4096 MB free")]
    assert hold(api, agent, "vm", "no host has 4096 MB free").status_code == 200
    reply = hold(api, api.admin, "vm", "every host is drained")
    assert reply.json()["state"] == "Held" and reply.json()["reason"] == "every host is drained"
    events = api.call("GET", "/v1/instances/vm/history", alice).json()
    assert [(e["kind"], e["message"]) for e in events] == [
        ("held", "no host has 4096 MB free"),
        ("held", "every host is drained"),
    ]


def test_only_agents_and_admins_hold_and_only_what_is_unplaced(api: Api) -> None:
    alice = api.user("alice")
    agent = api.user("sched", role="agent")
    create(api, alice, "vm")
    reply = hold(api, alice, "vm", "mine")
    assert reply.status_code == 403
    assert hold(api, agent, "vm", "").status_code == 400
    assert hold(api, agent, "vm", "   ").status_code == 400
    assert hold(api, agent, "nosuch", "x").status_code == 404
    api.call("POST", "/v1/hosts", api.admin, json={"name": "h1"})
    api.http.portal.call(  # type: ignore[union-attr]
        api.service.db.write,
        lambda tx: tx.hosts.update(HostId(1), up=True, memory=1024, cores=1),
    )
    # no node manager: the start fails and the instance is Held by the CM itself
    reply = api.call("POST", "/v1/instances/vm/activate", agent, json={"host": "h1"})
    assert reply.status_code == 503
    assert hold(api, agent, "vm", "retry later").json()["reason"] == "retry later"
    create(api, alice, "big", memory=2048)
    reply = api.call("POST", "/v1/instances/big/activate", agent, json={"host": "h1"})
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] == "insufficient_resources"
    assert "1024 MB of memory free" in reply.json()["error"]["message"]
