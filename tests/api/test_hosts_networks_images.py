"""Host, network, user and image administration through the real HTTP app."""

from __future__ import annotations

from tashi.api.schemas import HostOut, ImageOut, NetworkOut, ReservationOut
from tashi.domain.states import InstanceState
from tests.api.conftest import Api
from tests.api.test_instances import create, force_state


def test_register_and_list_hosts(api: Api) -> None:
    reply = api.call(
        "POST", "/v1/hosts", api.admin, json={"name": "node1", "memory": 4096, "cores": 4}
    )
    host = HostOut.model_validate(reply.json())
    assert (host.name, host.state, host.up, host.memory) == ("node1", "Normal", False, 4096)
    assert api.call("POST", "/v1/hosts", api.admin, json={"name": "node1"}).status_code == 409
    assert api.call("POST", "/v1/hosts", api.admin, json={"name": "bad/name"}).status_code == 400
    alice = api.user("alice")
    assert [h["name"] for h in api.call("GET", "/v1/hosts", alice).json()] == ["node1"]
    assert api.call("GET", "/v1/hosts/node1", alice).json()["id"] == host.id
    assert api.call("GET", "/v1/hosts/999", alice).status_code == 404


def test_host_state_notes_and_config(api: Api) -> None:
    api.call("POST", "/v1/hosts", api.admin, json={"name": "n1"})
    put = lambda url, body: api.call("PUT", url, api.admin, json=body)  # noqa: E731
    assert put("/v1/hosts/n1/state", {"state": "drained"}).json()["state"] == "Drained"
    assert put("/v1/hosts/n1/state", {"state": "NORMAL"}).json()["state"] == "Normal"
    reply = put("/v1/hosts/n1/state", {"state": "VersionMismatch"})
    assert reply.status_code == 400 and "cannot be set by hand" in reply.json()["error"]["message"]
    assert put("/v1/hosts/n1/state", {"state": "sideways"}).status_code == 409
    assert put("/v1/hosts/999/state", {"state": "Drained"}).status_code == 404
    assert put("/v1/hosts/n1/notes", {"notes": "disk 2 flaky"}).json()["notes"] == "disk 2 flaky"
    patch = lambda body: api.call("PATCH", "/v1/hosts/n1/config", api.admin, json=body)  # noqa: E731
    assert patch({"config": {"location": "ie", "isolation": "high"}}).json()["config"] == {
        "location": "ie",
        "isolation": "high",
    }
    assert patch({"config": {"isolation": ""}}).json()["config"] == {"location": "ie"}


def test_reservations(api: Api) -> None:
    api.call("POST", "/v1/hosts", api.admin, json={"name": "n1"})
    api.user("alice")
    assert api.call("PUT", "/v1/hosts/n1/reservations/alice", api.admin).json()["reserved"] == [2]
    api.call("PUT", "/v1/hosts/n1/reservations/alice", api.admin)  # idempotent
    got = ReservationOut.model_validate(
        api.call("GET", "/v1/hosts/n1/reservations", api.admin).json()
    )
    assert [u.name for u in got.users] == ["alice"]
    assert api.call("PUT", "/v1/hosts/n1/reservations/nobody", api.admin).status_code == 404
    assert api.call("DELETE", "/v1/hosts/n1/reservations/alice", api.admin).json()["reserved"] == []


def test_unregister_host_refused_while_instances_live_there(api: Api) -> None:
    api.call("POST", "/v1/hosts", api.admin, json={"name": "n1"})
    vm = create(api, api.admin, "vm").json()
    force_state(api, vm["id"], InstanceState.Activating, host=1)
    reply = api.call("DELETE", "/v1/hosts/n1", api.admin)
    assert reply.status_code == 409 and "1 instance" in reply.json()["error"]["message"]
    api.call("DELETE", "/v1/instances/vm?force=true", api.admin)
    assert api.call("DELETE", "/v1/hosts/n1", api.admin).status_code == 200
    assert api.call("GET", "/v1/hosts", api.admin).json() == []


def test_networks(api: Api) -> None:
    nets = [NetworkOut.model_validate(n) for n in api.call("GET", "/v1/networks", api.admin).json()]
    assert [(n.id, n.name, n.default) for n in nets] == [(1, "default", True)]
    assert (
        api.call("POST", "/v1/networks", api.admin, json={"id": 2, "name": "storage"}).status_code
        == 201
    )
    assert (
        api.call("POST", "/v1/networks", api.admin, json={"id": 2, "name": "x"}).status_code == 409
    )
    assert (
        api.call("POST", "/v1/networks", api.admin, json={"id": 3, "name": "storage"}).status_code
        == 409
    )
    assert (
        api.call("POST", "/v1/networks", api.admin, json={"id": -1, "name": "neg"}).status_code
        == 400
    )
    create(api, api.admin, "vm", nics=[{"network": 2}])
    reply = api.call("DELETE", "/v1/networks/storage", api.admin)
    assert reply.status_code == 409
    api.call("DELETE", "/v1/instances/vm", api.admin)
    assert api.call("DELETE", "/v1/networks/2", api.admin).status_code == 200


def test_user_administration(api: Api) -> None:
    alice = api.user("alice", priority=12)
    me = api.call("GET", "/v1/auth/whoami", alice).json()
    assert (me["name"], me["priority"], me["role"]) == ("alice", 12, "user")
    bad = [
        {"name": "alice", "password": "long-enough"},
        {"name": "Bad Name", "password": "long-enough"},
        {"name": "zed", "password": "short"},
        {"name": "zed", "password": "long-enough", "role": "king"},
        {"name": "zed", "password": "long-enough", "priority": -1},
    ]
    for body in bad:
        assert api.call("POST", "/v1/users", api.admin, json=body).status_code in (400, 409), body
    create(api, alice, "mine")
    reply = api.call("DELETE", "/v1/users/alice", api.admin)
    assert reply.status_code == 409 and "owns 1" in reply.json()["error"]["message"]
    reply = api.call("DELETE", "/v1/users/admin", api.admin)
    assert reply.status_code == 409 and "yourself" in reply.json()["error"]["message"]


def test_images(api: Api) -> None:
    images = [ImageOut.model_validate(i) for i in api.call("GET", "/v1/images", api.admin).json()]
    assert [(i.id, i.imageName, i.format) for i in images] == [
        (0, "base.qcow2", "qcow2"),
        (1, "other.img", "raw"),
    ]
    assert images[0].virtualSize == 64 * 2**20
    assert images[1].imageSize == 4096


def test_openapi_documents_every_route(api: Api) -> None:
    spec = api.call("GET", "/v1/openapi.json", api.admin).json()
    summaries = {op["summary"] for path in spec["paths"].values() for op in path.values()}
    for verb in (
        "createVm",
        "createMany",
        "destroyVm",
        "destroyMany",
        "shutdownMany",
        "getInstances",
        "getHosts",
        "setHostState",
        "setHostNotes",
        "setHostConfig",
        "addReservation",
        "delReservation",
        "getReservation",
        "registerHost",
        "unregisterHost",
        "registerUser",
        "unregisterUser",
        "getNetworks",
        "getUsers",
        "getImages",
        "migrateVm",
        "vmmSpecificCall",
        "suspendVm",
        "resumeVm",
    ):
        assert verb in summaries, verb
