"""Authentication and authorisation through the real HTTP app."""

from __future__ import annotations

import configparser
import functools
import stat

from tashi.api import paths
from tests.api.conftest import Api

OPEN = {paths.HEALTH, paths.METRICS}


def test_every_api_route_needs_a_token(api: Api) -> None:
    checked = 0
    spec = api.call("GET", "/v1/openapi.json", api.admin).json()
    for path, operations in spec["paths"].items():
        if path in OPEN:
            continue
        for method in sorted(m.upper() for m in operations):
            if (path, method) == (paths.TOKEN, "POST"):
                continue
            url = path.replace("{ref}", "1").replace("{user}", "1")
            reply = api.http.request(method, url, json={})
            assert reply.status_code == 401, (method, url, reply.text)
            assert reply.json()["error"]["code"] == "not_authenticated"
            assert reply.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked > 25


def test_nothing_else_is_open(api: Api) -> None:
    for url in ("/v1/openapi.json", "/openapi.json", "/docs", "/redoc"):
        assert api.http.get(url).status_code in (401, 404), url
    assert api.call("GET", "/v1/openapi.json", api.admin).json()["info"]["title"]


def test_health_and_metrics_are_open(api: Api) -> None:
    assert api.http.get("/health").json()["status"] == "ok"
    text = api.http.get("/metrics").text
    assert 'tashi_instances{state="Pending"} 0' in text


def test_bad_token_and_bad_password(api: Api) -> None:
    reply = api.http.get("/v1/hosts", headers={"Authorization": "Bearer nonsense"})
    assert reply.status_code == 401
    assert "expired" in reply.json()["error"]["message"]
    reply = api.http.post("/v1/auth/token", json={"username": "admin", "password": "wrong-one"})
    assert reply.status_code == 401
    reply = api.http.post("/v1/auth/token", json={"username": "nobody", "password": "wrong-one"})
    assert reply.status_code == 401
    assert reply.json()["error"]["message"] == "wrong user name or password"


def test_logout_revokes_the_token(api: Api) -> None:
    who = api.admin
    assert api.call("GET", "/v1/hosts", who).status_code == 200
    assert api.call("DELETE", "/v1/auth/token", who).status_code == 200
    assert api.call("GET", "/v1/hosts", who).status_code == 401


def test_admin_verbs_need_admin(api: Api) -> None:
    alice = api.user("alice")
    for method, url, body in [
        ("POST", "/v1/hosts", {"name": "h1"}),
        ("POST", "/v1/networks", {"id": 7, "name": "seven"}),
        ("POST", "/v1/users", {"name": "bob", "password": "long-enough"}),
        ("DELETE", "/v1/users/admin", None),
    ]:
        reply = api.call(method, url, alice, json=body)
        assert reply.status_code == 403, (url, reply.text)
        assert "admin" in reply.json()["error"]["message"]


def test_removed_user_loses_access_at_once(api: Api) -> None:
    bob = api.user("bob")
    assert api.call("GET", "/v1/instances", bob).status_code == 200
    assert api.call("DELETE", "/v1/users/bob", api.admin).status_code == 200
    assert api.call("GET", "/v1/instances", bob).status_code == 401


def test_users_see_only_themselves(api: Api) -> None:
    api.user("carol")
    dave = api.user("dave")
    names = [u["name"] for u in api.call("GET", "/v1/users", dave).json()]
    assert names == ["dave"]
    assert api.call("GET", "/v1/users/carol", dave).status_code == 403
    everyone = [u["name"] for u in api.call("GET", "/v1/users", api.admin).json()]
    assert everyone == ["admin", "carol", "dave"]


def test_first_start_writes_private_admin_credentials(api: Api) -> None:
    creds = api.settings.cluster_manager.state_dir / "admin-credentials.cfg"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(creds)
    assert parser["AccessClusterManager"]["username"] == "admin"
    before = creds.read_text()
    again = api.http.portal.call(  # type: ignore[union-attr]
        functools.partial(api.service.auth.ensure_admin, creds, host="localhost", port=9882)
    )
    assert again is None
    assert creds.read_text() == before


def test_passwords_are_stored_as_salted_hashes(api: Api) -> None:
    api.user("erin")
    api.user("frank")

    def hashes(tx):  # type: ignore[no-untyped-def]
        return [
            tx.users.password_hash(u.id) for u in tx.users.list() if u.name in ("erin", "frank")
        ]

    stored = api.http.portal.call(api.service.db.read, hashes)  # type: ignore[union-attr]
    assert all(h.startswith("scrypt$") for h in stored)
    assert "erin-secret-pw" not in stored[0]
    assert stored[0].split("$")[4] != stored[1].split("$")[4]  # distinct salts


def test_roles_are_checked_for_agent_calls(api: Api) -> None:
    alice = api.user("alice")
    api.call("POST", "/v1/instances", alice, json={"name": "v1", "disks": [{"uri": "base.qcow2"}]})
    reply = api.call("POST", "/v1/instances/v1/activate", alice, json={"host": "1"})
    assert reply.status_code == 403
    assert "agent" in reply.json()["error"]["message"]
