"""Instance operations through the real HTTP app: createVm validation, lists, batches, states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tashi.api.schemas import BatchResultOut, InstanceOut
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceChanges
from tests.api.conftest import Api, start_api

DISK = [{"uri": "base.qcow2"}]


def create(api: Api, who: dict[str, str], name: str, **extra: Any) -> Any:
    return api.call("POST", "/v1/instances", who, json={"name": name, "disks": DISK, **extra})


def count(api: Api) -> int:
    return len(api.call("GET", "/v1/instances", api.admin).json())


def force_state(api: Api, ref: int, state: InstanceState, host: int | None = None) -> None:
    """Test set-up: put an instance into a state only a node manager could bring it to."""

    def move(tx):  # type: ignore[no-untyped-def]
        inst = tx.instances.get(InstanceId(ref))
        changes = InstanceChanges(host_id=HostId(host) if host else None)
        now = api.service.instances._clock.now()
        tx.instances.transition(inst.id, inst.state, state, now=now, changes=changes)

    api.http.portal.call(api.service.db.write, move)  # type: ignore[union-attr]


def test_create_vm_stores_a_pending_instance(api: Api) -> None:
    alice = api.user("alice")
    reply = create(api, alice, "web", cores=2, memory=256, hints={"densePack": "true"})
    assert reply.status_code == 201, reply.text
    inst = InstanceOut.model_validate(reply.json())
    assert (inst.name, inst.state, inst.user, inst.cores, inst.memory) == (
        "web",
        "Pending",
        "alice",
        2,
        256,
    )
    assert inst.hostId is None and inst.cpuShare == 1024
    assert [d.uri for d in inst.disks] == ["base.qcow2"]
    assert inst.nics[0].network == 1 and inst.nics[0].mac.startswith("52:54:00:")
    second = create(api, alice, "web2").json()
    assert second["id"] > inst.id
    api.user("bob")  # a new user must not make older owners' names unknown
    assert create(api, api.admin, "admins").json()["user"] == "admin"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"name": "bad name"}, "may only hold"),
        ({"name": "bad_name"}, "may only hold"),
        ({"name": ""}, "empty"),
        ({"name": "12345"}, "all digits"),
        ({"name": "x" * 64}, "longer than"),
        ({"cores": 0}, "cores must be between 1 and 8"),
        ({"cores": 9}, "maxCores"),
        ({"memory": 0}, "memory must be between"),
        ({"memory": 8193}, "maxMemory"),
        ({"cpuShare": 1}, "cpuShare"),
        ({"cpuShare": 300000}, "cpuShare"),
        ({"disks": [{"uri": "../etc/passwd"}]}, "not an image name"),
        ({"disks": [{"uri": "/etc/passwd"}]}, "not an image name"),
        ({"disks": [{"uri": "missing.qcow2"}]}, "no image"),
        ({"disks": []}, "disks"),
        ({"nics": [{"network": 99}]}, "network 99 does not exist"),
        ({"nics": [{"mac": "zz:00:00:00:00:00"}]}, "not a MAC address"),
        ({"nics": [{"mac": "01:00:5e:00:00:01"}]}, "multicast"),
        ({"nics": [{"ip": "300.1.1.1"}]}, "not an IPv4 address"),
        ({"hints": {"__resume_source": "x"}}, "reserved"),
        ({"hints": {"a": "line\nbreak"}}, "one line"),
        ({"cores": "many"}, "cores"),
        ({"surprise": 1}, "surprise"),
        ({"groupName": "bad group"}, "may only hold"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    api: Api, extra: dict[str, Any], words: str
) -> None:
    alice = api.user("alice")
    reply = api.call("POST", "/v1/instances", alice, json={"name": "ok", "disks": DISK, **extra})
    assert reply.status_code in (400, 404), reply.text
    assert words in reply.json()["error"]["message"]
    assert count(api) == 0


def test_a_symlink_out_of_the_image_store_is_refused(api: Api, tmp_path: Path) -> None:
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"x")
    (api.settings.vfs.prefix / "images" / "sneaky.img").symlink_to(secret)
    reply = create(api, api.admin, "vm", disks=[{"uri": "sneaky.img"}])
    assert reply.status_code == 400
    assert "outside the image store" in reply.json()["error"]["message"]


def test_names_are_unique_unless_allowed(api: Api, tmp_path: Path) -> None:
    alice = api.user("alice")
    assert create(api, alice, "db").status_code == 201
    reply = create(api, alice, "db")
    assert reply.status_code == 409
    assert "db" in reply.json()["error"]["message"]
    assert count(api) == 1


def test_duplicate_names_when_allowed(tmp_path: Path) -> None:
    for api in start_api("memory", tmp_path, allow_duplicate_names=True):
        assert create(api, api.admin, "db").status_code == 201
        assert create(api, api.admin, "db").status_code == 201
        reply = api.call("GET", "/v1/instances/db", api.admin)
        assert reply.status_code == 400
        assert "use an id" in reply.json()["error"]["message"]


def test_macs_are_unique(api: Api) -> None:
    mac = "52:54:00:aa:bb:cc"
    assert create(api, api.admin, "a", nics=[{"mac": mac}]).status_code == 201
    reply = create(api, api.admin, "b", nics=[{"mac": mac.upper()}])
    assert reply.status_code == 409
    assert mac in reply.json()["error"]["message"]
    reply = create(
        api, api.admin, "c", nics=[{"mac": "52:54:00:00:00:01"}, {"mac": "52:54:00:00:00:01"}]
    )
    assert reply.status_code == 400


def test_create_many_names_and_all_or_none(api: Api) -> None:
    alice = api.user("alice")
    body = {"basename": "node", "count": 11, "disks": DISK, "memory": 64}
    reply = api.call("POST", "/v1/instances:createMany", alice, json=body)
    assert reply.status_code == 201, reply.text
    names = [i["name"] for i in reply.json()]
    assert names[0] == "node-00" and names[-1] == "node-10"
    assert len({i["nics"][0]["mac"] for i in reply.json()}) == 11
    create(api, alice, "web-1")
    reply = api.call(
        "POST",
        "/v1/instances:createMany",
        alice,
        json={"basename": "web", "count": 3, "disks": DISK},
    )
    assert reply.status_code == 409
    assert [
        i["name"]
        for i in api.call("GET", "/v1/instances", alice).json()
        if i["name"].startswith("web")
    ] == ["web-1"]


def test_create_many_limits(api: Api) -> None:
    body = {"basename": "n", "count": 1001, "disks": DISK}
    reply = api.call("POST", "/v1/instances:createMany", api.admin, json=body)
    assert reply.status_code == 400 and "maxBatch" in reply.json()["error"]["message"]
    body = {"basename": "n", "count": 2, "disks": DISK, "nics": [{"mac": "52:54:00:00:00:09"}]}
    assert api.call("POST", "/v1/instances:createMany", api.admin, json=body).status_code == 400
    body = {"basename": "n", "count": 2, "disks": [{"uri": "base.qcow2", "persistent": True}]}
    reply = api.call("POST", "/v1/instances:createMany", api.admin, json=body)
    assert reply.status_code == 400
    assert "persistent" in reply.json()["error"]["message"]


def test_users_see_and_touch_only_their_own(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    vm = create(api, alice, "private").json()
    assert [i["name"] for i in api.call("GET", "/v1/instances", bob).json()] == []
    for method, url in [
        ("GET", "/v1/instances/private"),
        ("DELETE", "/v1/instances/private"),
        ("POST", "/v1/instances/private/pause"),
    ]:
        assert api.call(method, url, bob).status_code == 403
    assert api.call("GET", "/v1/instances?user=alice", bob).status_code == 403
    assert api.call("GET", f"/v1/instances/{vm['id']}", api.admin).status_code == 200
    reply = create(api, bob, "for-alice", userId=vm["userId"])
    assert reply.status_code == 403
    assert create(api, api.admin, "for-alice", userId=vm["userId"]).json()["user"] == "alice"


def test_get_instances_filters(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    a = create(api, alice, "a1").json()
    create(api, bob, "b1")
    api.call("POST", "/v1/hosts", api.admin, json={"name": "h1"})
    force_state(api, a["id"], InstanceState.Activating, host=1)
    get = lambda q: [i["name"] for i in api.call("GET", f"/v1/instances?{q}", api.admin).json()]  # noqa: E731
    assert get("user=bob") == ["b1"]
    assert get("state=activating") == ["a1"]
    assert get("host=h1") == ["a1"]
    assert get("name=b1") == ["b1"]
    assert get("limit=1") == ["a1"]
    assert get(f"after={a['id']}") == ["b1"]
    reply = api.call("GET", "/v1/instances?state=flying", api.admin)
    assert reply.status_code == 409 and "Pending" in reply.json()["error"]["message"]


def test_destroy_removes_pending_and_held_at_once(api: Api) -> None:
    a = create(api, api.admin, "a").json()
    b = create(api, api.admin, "b").json()
    force_state(api, b["id"], InstanceState.Held)
    assert api.call("DELETE", "/v1/instances/a", api.admin).json() == {"message": "removed"}
    assert api.call("DELETE", f"/v1/instances/{b['id']}", api.admin).status_code == 200
    assert count(api) == 0
    assert api.call("DELETE", f"/v1/instances/{a['id']}", api.admin).status_code == 404


def test_verbs_needing_a_node_manager_say_so(api: Api) -> None:
    vm = create(api, api.admin, "vm").json()
    api.call("POST", "/v1/hosts", api.admin, json={"name": "h1"})
    force_state(api, vm["id"], InstanceState.Activating, host=1)
    force_state(api, vm["id"], InstanceState.Running)
    for verb in ("shutdown", "pause", "suspend"):
        reply = api.call("POST", f"/v1/instances/vm/{verb}", api.admin)
        assert reply.status_code == 503, reply.text
        assert "no node manager" in reply.json()["error"]["message"]
    reply = api.call("POST", "/v1/instances/vm/vmmSpecificCall", api.admin, json={"arg": "list"})
    assert reply.status_code == 503
    assert api.call("GET", "/v1/instances/vm", api.admin).json()["state"] == "Running"
    # A destroy is an intent that sticks: the node did not answer, so the instance stays
    # Destroying for reconciliation to finish (and an admin can force it).
    reply = api.call("DELETE", "/v1/instances/vm", api.admin)
    assert reply.status_code == 503
    assert api.call("GET", "/v1/instances/vm", api.admin).json()["state"] == "Destroying"
    assert api.call("DELETE", "/v1/instances/vm?force=true", api.admin).status_code == 200


def test_state_rules_are_checked_first(api: Api) -> None:
    create(api, api.admin, "vm")
    for verb in ("shutdown", "pause", "unpause", "suspend", "resume"):
        reply = api.call("POST", f"/v1/instances/vm/{verb}", api.admin)
        assert reply.status_code == 409, (verb, reply.text)
        assert "Pending" in reply.json()["error"]["message"]
    reply = api.call("POST", "/v1/instances/vm/migrate", api.admin, json={"targetHost": "1"})
    assert reply.status_code == 409


def test_resume_makes_a_suspended_instance_pending_again(api: Api) -> None:
    vm = create(api, api.admin, "sleeper").json()
    force_state(api, vm["id"], InstanceState.Suspended)
    reply = api.call("POST", "/v1/instances/sleeper/resume", api.admin)
    assert reply.status_code == 200
    assert reply.json()["state"] == "Pending"


def test_activate_checks_the_host(api: Api) -> None:
    agent = api.user("sched", role="agent")
    create(api, api.admin, "vm")
    api.call("POST", "/v1/hosts", api.admin, json={"name": "h1"})
    reply = api.call("POST", "/v1/instances/vm/activate", agent, json={"host": "h1"})
    assert reply.status_code == 409 and "down" in reply.json()["error"]["message"]
    reply = api.call("POST", "/v1/instances/vm/activate", agent, json={"host": "nohost"})
    assert reply.status_code == 404


def test_force_destroy_is_for_admins(api: Api) -> None:
    alice = api.user("alice")
    vm = create(api, alice, "stuck").json()
    force_state(api, vm["id"], InstanceState.Orphaned, host=None)
    assert api.call("DELETE", "/v1/instances/stuck?force=true", alice).status_code == 403
    assert api.call("DELETE", "/v1/instances/stuck?force=true", api.admin).status_code == 200
    assert count(api) == 0


def test_destroy_many_and_shutdown_many(api: Api) -> None:
    alice = api.user("alice")
    api.call(
        "POST", "/v1/instances:createMany", alice, json={"basename": "w", "count": 3, "disks": DISK}
    )
    create(api, alice, "w-x")
    create(api, alice, "wide")
    reply = api.call("POST", "/v1/instances:shutdownMany", alice, json={"basename": "w"})
    result = BatchResultOut.model_validate(reply.json())
    assert len(result.failed) == 3 and result.failed[0].error.code == "invalid_state"
    reply = api.call("POST", "/v1/instances:destroyMany", alice, json={"basename": "w"})
    result = BatchResultOut.model_validate(reply.json())
    assert len(result.removed) == 3 and not result.failed
    assert sorted(i["name"] for i in api.call("GET", "/v1/instances", alice).json()) == [
        "w-x",
        "wide",
    ]
    reply = api.call("POST", "/v1/instances:destroyMany", alice, json={"basename": "w"})
    assert reply.status_code == 404 and "unused basename" in reply.json()["error"]["message"]
    reply = api.call("POST", "/v1/instances:destroyMany", alice, json={})
    assert reply.status_code == 400
