"""Paged lists through the real HTTP app: ``after`` (the last id of the page before) and
``limit`` on every list, with the same validation and the API's error format."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api


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
@pytest.mark.parametrize("url", ["/v1/hosts", "/v1/instances"])
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
