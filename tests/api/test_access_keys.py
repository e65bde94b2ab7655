"""EC2 access keys through the real HTTP app: made, listed, deleted, owned, and sealed."""

from __future__ import annotations

import asyncio
import stat

from tashi.clustermanager.accounts.accesskeys import KEY_FILE
from tests.api.conftest import Api

KEYS = "/v1/accessKeys"


def test_a_key_is_made_with_its_secret_told_once(api: Api) -> None:
    alice = api.user("alice")
    made = api.call("POST", KEYS, alice, json={})
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["user"] == "alice"
    assert key["accessKeyId"].startswith("AKIA") and len(key["accessKeyId"]) == 20
    assert len(key["secretAccessKey"]) == 40
    listed = api.call("GET", KEYS, alice).json()
    assert [k["accessKeyId"] for k in listed] == [key["accessKeyId"]]
    assert "secretAccessKey" not in listed[0] or listed[0]["secretAccessKey"] is None
    found = asyncio.run(api.service.access_keys.secret_of(key["accessKeyId"]))
    assert found is not None
    secret, principal = found
    assert secret == key["secretAccessKey"] and principal.name == "alice"


def test_the_secret_is_stored_sealed_with_a_private_key_file(api: Api) -> None:
    alice = api.user("alice")
    secret = api.call("POST", KEYS, alice, json={}).json()["secretAccessKey"]
    key_file = api.settings.cluster_manager.state_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    async def stored() -> str:
        keys = await api.service.db.read(lambda tx: tx.access_keys.list())
        found = await api.service.db.read(lambda tx: tx.access_keys.get(keys[0].id))
        assert found is not None
        return found[1]

    sealed = asyncio.run(stored())
    assert secret not in sealed and sealed


def test_users_see_and_delete_only_their_own_keys(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    mine = api.call("POST", KEYS, alice, json={}).json()["accessKeyId"]
    api.call("POST", KEYS, bob, json={})
    assert [k["accessKeyId"] for k in api.call("GET", KEYS, alice).json()] == [mine]
    assert api.call("GET", KEYS, bob, params={"user": "alice"}).status_code == 403
    assert api.call("POST", KEYS, bob, json={"user": "alice"}).status_code == 403
    gone = api.call("DELETE", f"{KEYS}/{mine}", bob)
    assert gone.status_code == 404
    assert api.call("DELETE", f"{KEYS}/{mine}", alice).json()["accessKeyId"] == mine
    assert asyncio.run(api.service.access_keys.secret_of(mine)) is None
    assert api.call("DELETE", f"{KEYS}/{mine}", alice).status_code == 404


def test_admins_make_list_and_delete_anyones_keys(api: Api) -> None:
    api.user("alice")
    made = api.call("POST", KEYS, api.admin, json={"user": "alice"}).json()
    assert made["user"] == "alice"
    everyone = api.call("GET", KEYS, api.admin, params={"user": "*"}).json()
    assert [k["user"] for k in everyone] == ["alice"]
    assert api.call("GET", KEYS, api.admin).json() == []  # the admin's own: none
    assert api.call("POST", KEYS, api.admin, json={"user": "nobody"}).status_code == 404
    assert api.call("DELETE", f"{KEYS}/{made['accessKeyId']}", api.admin).status_code == 200


def test_a_removed_users_keys_stop_working_at_once(api: Api) -> None:
    alice = api.user("alice")
    key = api.call("POST", KEYS, alice, json={}).json()["accessKeyId"]
    assert asyncio.run(api.service.access_keys.secret_of(key)) is not None  # now cached
    assert api.call("DELETE", "/v1/users/alice", api.admin).status_code == 200
    assert asyncio.run(api.service.access_keys.secret_of(key)) is None
