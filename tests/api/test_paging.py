"""Paged lists through the real HTTP app: ``after`` (the last id of the page before) and
``limit`` on every list, with the same validation and the API's error format."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api

DISK = [{"uri": "base.qcow2"}]


def ids(api: Api, url: str, key: str = "id", **params: Any) -> list[Any]:
    reply = api.call("GET", url, api.admin, params=params)
    assert reply.status_code == 200, reply.text
    return [item[key] for item in reply.json()]


def pages(api: Api, url: str, key: str, every: list[Any]) -> None:
    """The first page, the next via ``after``, and past the last: an empty page."""
    assert len(every) >= 3
    first = ids(api, url, key, limit=2)
    assert first == every[:2]
    second = ids(api, url, key, limit=2, after=first[-1])
    assert second == every[2:4]
    assert ids(api, url, key, after=every[-1]) == []
    assert ids(api, url, key, after=every[0]) == every[1:]


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": -1}, {"limit": "x"}, {"after": -1}])
@pytest.mark.parametrize(
    "url",
    ["/v1/hosts", "/v1/instances", "/v1/users", "/v1/networks", "/v1/images", "/v1/addresses"],
)
def test_a_bad_marker_or_limit_is_400_in_the_api_format(
    api: Api, url: str, bad: dict[str, Any]
) -> None:
    reply = api.call("GET", url, api.admin, params=bad)
    assert reply.status_code == 400, reply.text
    field = next(iter(bad))
    assert reply.json()["error"]["message"].startswith(f"{field}: ")


def test_get_hosts_pages(api: Api) -> None:
    for n in range(5):
        assert api.call("POST", "/v1/hosts", api.admin, json={"name": f"n{n}"}).status_code == 201
    every = ids(api, "/v1/hosts")
    assert len(every) == 5 and every == sorted(every)
    pages(api, "/v1/hosts", "id", every)


def test_get_users_pages_and_a_user_sees_only_themselves(api: Api) -> None:
    alice = api.user("alice")
    for name in ("bob", "carol", "dave"):
        api.user(name)
    every = ids(api, "/v1/users")
    assert len(every) == 5  # with the admin
    pages(api, "/v1/users", "id", every)
    mine = api.call("GET", "/v1/users", alice).json()
    assert [u["name"] for u in mine] == ["alice"]
    past = api.call("GET", "/v1/users", alice, params={"after": mine[0]["id"]}).json()
    assert past == []


def test_get_networks_pages(api: Api) -> None:
    for n in (2, 3, 4):
        body = {"id": n, "name": f"net{n}"}
        assert api.call("POST", "/v1/networks", api.admin, json=body).status_code == 201
    assert ids(api, "/v1/networks") == [1, 2, 3, 4]
    pages(api, "/v1/networks", "id", [1, 2, 3, 4])


def test_instance_history_pages_after_an_event_id(api: Api) -> None:
    made = api.call("POST", "/v1/instances", api.admin, json={"name": "vm", "disks": DISK})
    assert made.status_code == 201, made.text
    iid = made.json()["id"]

    def note(tx):  # type: ignore[no-untyped-def]
        for n in range(4):
            tx.events.add(iid, "note", f"n{n}", now=api.service.instances._clock.now())

    api.http.portal.call(api.service.db.write, note)  # type: ignore[union-attr]
    url = f"/v1/instances/{iid}/history"
    every = ids(api, url)
    assert len(every) >= 4 and every == sorted(every)
    first = ids(api, url, limit=2, after=0)  # from the start
    assert first == every[:2]
    assert ids(api, url, limit=2, after=first[-1]) == every[2:4]
    assert ids(api, url, after=every[-1]) == []
    assert ids(api, url, limit=2) == every[-2:]  # without a marker: the newest
    reply = api.call("GET", url, api.admin, params={"after": -1})
    assert reply.status_code == 400 and reply.json()["error"]["message"].startswith("after: ")


def test_get_images_pages_by_place_in_name_order(api: Api) -> None:
    images = api.settings.vfs.prefix / "images"  # as make_settings made it
    for name in ("c.img", "d.img"):
        (images / name).write_bytes(b"\0" * 512)
    names = lambda **q: ids(api, "/v1/images", "imageName", **q)  # noqa: E731
    assert names() == ["base.qcow2", "c.img", "d.img", "other.img"]
    assert ids(api, "/v1/images") == [0, 1, 2, 3]
    pages(api, "/v1/images", "id", [0, 1, 2, 3])
    assert names(after=1, limit=1) == ["d.img"]


def test_addresses_page_by_instance(api: Api) -> None:
    made = []
    for n in range(3):
        body = {"name": f"vm{n}", "disks": DISK, "nics": [{"network": 1}, {"network": 1}]}
        reply = api.call("POST", "/v1/instances", api.admin, json=body)
        assert reply.status_code == 201, reply.text
        made.append(reply.json()["id"])
        for nic in (0, 1):
            url = f"/v1/instances/{made[-1]}/nics/{nic}/address"
            got = api.call("POST", url, api.admin, json={"range": "198.19.3.10-198.19.3.30"})
            assert got.status_code == 200, got.text
    every = [
        (a["instanceId"], a["nicIndex"]) for a in api.call("GET", "/v1/addresses", api.admin).json()
    ]
    assert every == [(i, n) for i in made for n in (0, 1)]
    first = ids(api, "/v1/addresses", "instanceId", limit=2)
    assert first == [made[0], made[0], made[1], made[1]]
    assert ids(api, "/v1/addresses", "instanceId", after=made[1]) == [made[2], made[2]]
    assert ids(api, "/v1/addresses", "instanceId", after=made[2]) == []
    reply = api.call("GET", "/v1/addresses", api.admin, params={"limit": 0})
    assert reply.status_code == 400 and reply.json()["error"]["message"].startswith("limit: ")


def test_access_keys_page_after_a_key_id(api: Api) -> None:
    alice = api.user("alice")
    made = [
        api.call("POST", "/v1/accessKeys", alice, json={}).json()["accessKeyId"] for _ in range(4)
    ]
    listed = lambda **q: [  # noqa: E731
        k["accessKeyId"] for k in api.call("GET", "/v1/accessKeys", alice, params=q).json()
    ]
    every = listed()
    assert sorted(every) == sorted(made)
    first = listed(limit=2)
    assert first == every[:2]
    assert listed(limit=2, after=first[-1]) == every[2:]
    assert listed(after=every[-1]) == []
    gone = api.call("GET", "/v1/accessKeys", alice, params={"after": "AKIANOSUCHKEY0000000"})
    assert gone.status_code == 400 and "AKIANOSUCHKEY0000000" in gone.json()["error"]["message"]
    bad = api.call("GET", "/v1/accessKeys", alice, params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("limit: ")
