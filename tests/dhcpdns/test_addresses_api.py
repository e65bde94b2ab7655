"""NIC addresses through the real cluster-manager app (memory and SQLite stores): what the
DHCP/DNS hook calls, who may call it, and the address in getInstances (``--show-nics``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tashi.api.schemas import InstanceOut
from tashi.client.tables import choose_columns, render
from tashi.client.verbs.instances import INSTANCE_TABLE
from tests.api.conftest import Api, start_api

DISK = [{"uri": "base.qcow2"}]
RANGE = {"range": "198.19.1.10-198.19.1.12"}


@pytest.fixture(params=["memory", "sqlite"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    yield from start_api(request.param, tmp_path)


def create(api: Api, name: str, nics: list[dict[str, Any]] | None = None) -> int:
    body: dict[str, Any] = {"name": name, "disks": DISK}
    if nics is not None:
        body["nics"] = nics
    reply = api.call("POST", "/v1/instances", api.admin, json=body)
    assert reply.status_code == 201, reply.text
    return int(reply.json()["id"])


def allocate(api: Api, who: dict[str, str], ref: int | str, index: int = 0) -> Any:
    return api.call("POST", f"/v1/instances/{ref}/nics/{index}/address", who, json=RANGE)


def test_an_agent_allocates_the_lowest_free_address_once_per_nic(api: Api) -> None:
    agent = api.user("sched", role="agent")
    api.call("POST", "/v1/networks", api.admin, json={"id": 2, "name": "second"})
    first = create(api, "web", [{"network": 1}, {"network": 2}])
    second = create(api, "db")
    reply = allocate(api, agent, first)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["ip"] == "198.19.1.10" and body["index"] == 0 and body["network"] == 1
    assert allocate(api, agent, "web").json()["ip"] == "198.19.1.10"  # again: the same one
    assert allocate(api, agent, first, 1).json()["ip"] == "198.19.1.10"  # network 2's own
    assert allocate(api, agent, second).json()["ip"] == "198.19.1.11"
    assert allocate(api, agent, first, 2).status_code == 400  # no NIC 2

    listed = api.call("GET", "/v1/addresses?network=1", agent).json()
    assert [(a["ip"], a["instanceId"], a["nicIndex"]) for a in listed] == [
        ("198.19.1.10", first, 0),
        ("198.19.1.11", second, 0),
    ]
    inst = InstanceOut.model_validate(api.call("GET", f"/v1/instances/{first}", agent).json())
    assert [n.ip for n in inst.nics] == ["198.19.1.10", "198.19.1.10"]
    # what `tashi getInstances --show-nics` prints
    columns = choose_columns(INSTANCE_TABLE, [(True, "nics")])
    assert "1:198.19.1.10:" in render(INSTANCE_TABLE, [inst], columns)


def test_a_full_range_answers_insufficient_resources_and_destroy_frees(api: Api) -> None:
    agent = api.user("sched", role="agent")
    ids = [create(api, f"vm{i}") for i in range(4)]
    for iid in ids[:3]:
        assert allocate(api, agent, iid).status_code == 200
    reply = allocate(api, agent, ids[3])
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] == "insufficient_resources"
    assert api.call("DELETE", f"/v1/instances/{ids[1]}", api.admin).status_code == 200
    assert allocate(api, agent, ids[3]).json()["ip"] == "198.19.1.11"


def test_a_nic_keeps_the_address_it_was_created_with_when_it_is_in_the_range(api: Api) -> None:
    agent = api.user("sched", role="agent")
    iid = create(api, "fixed", [{"network": 1, "ip": "198.19.1.12"}])
    assert allocate(api, agent, iid).json()["ip"] == "198.19.1.12"
    assert allocate(api, agent, create(api, "next")).json()["ip"] == "198.19.1.10"


def test_users_may_not_allocate_and_bad_ranges_are_refused(api: Api) -> None:
    alice = api.user("alice")
    agent = api.user("sched", role="agent")
    iid = create(api, "web")
    assert allocate(api, alice, iid).status_code == 403
    assert api.call("GET", "/v1/addresses", alice).status_code == 403
    for bad in ("198.19.1.12-198.19.1.10", "198.19.1.10", "a-b"):
        url = f"/v1/instances/{iid}/nics/0/address"
        assert api.call("POST", url, agent, json={"range": bad}).status_code == 400
