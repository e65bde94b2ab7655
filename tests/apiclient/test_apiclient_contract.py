"""The one API client against the real cluster manager's app: every error answer the app gives
arrives as the ``TashiError`` category the service raised, with the service's message.

The app (over the in-memory store) runs in Starlette's ``TestClient`` for its lifespan; the
client reaches it through ``httpx.ASGITransport`` on the same event loop (the test client's
portal), so what is decoded is what the REST front-end really answers, not a hand-made reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tashi.api.schemas import DiskIn, InstanceIn, NetworkIn, UserIn
from tashi.apiclient import ApiClient
from tashi.domain.errors import (
    AlreadyExists,
    Forbidden,
    InvalidInput,
    InvalidState,
    NotAuthenticated,
    NotFound,
    TashiError,
)
from tests.api.conftest import Api, start_api

T = TypeVar("T")
Work = Callable[[ApiClient], Awaitable[T]]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from start_api("memory", tmp_path)


def ask(api: Api, work: Work[T], **credentials: Any) -> T:
    """``work`` done by an ``ApiClient`` of the app, logged in as ``credentials`` say
    (default: the admin)."""
    if not credentials:
        credentials = {"username": "admin", "password": api.admin_password}

    async def run() -> T:
        transport = httpx.ASGITransport(app=api.http.app)
        async with ApiClient("http://cm.test", transport=transport, **credentials) as client:
            return await work(client)

    portal = api.http.portal
    assert portal is not None
    return portal.call(run)


def refused(
    api: Api, work: Work[Any], kind: type[TashiError], says: str | None = None, **who: Any
) -> None:
    with pytest.raises(kind, match=says) as caught:
        ask(api, work, **who)
    assert type(caught.value) is kind  # the category itself, not a parent


def test_each_category_the_service_raises_arrives_as_itself(api: Api) -> None:
    refused(api, lambda c: c.get_instance("nosuch"), NotFound, "nosuch")
    refused(api, lambda c: c.add_network(NetworkIn(id=1, name="again")), AlreadyExists)
    vm = InstanceIn(name="idle", disks=[DiskIn(uri="other.img")])
    made = ask(api, lambda c: c.create_vm(vm))
    refused(api, lambda c: c.pause_vm(made.id), InvalidState, "Pending")
    huge = InstanceIn(name="huge", disks=[DiskIn(uri="other.img")], cores=100)
    refused(api, lambda c: c.create_vm(huge), InvalidInput)


def test_who_may_do_what(api: Api) -> None:
    refused(api, lambda c: c.get_hosts(), NotAuthenticated, None, username="admin", password="no")
    user = UserIn(name="alice", password="alice-secret-pw", role="user")
    ask(api, lambda c: c.register_user(user))
    alice = {"username": "alice", "password": "alice-secret-pw"}
    refused(api, lambda c: c.register_user(user), Forbidden, None, **alice)
    refused(api, lambda c: c.get_hosts(), NotAuthenticated, None, token="not-a-token")


def test_a_revoked_token_of_our_own_is_replaced_by_one_login(api: Api) -> None:
    async def work(client: ApiClient) -> list[str]:
        first = await client.login()
        async with ApiClient(http=client.http) as same:
            await same.logout()  # revoked behind the client's back, as an expiry would
        # logout dropped the shared header: put the dead token back, so the next call is refused
        client.http.headers["Authorization"] = f"Bearer {first.token}"
        hosts = await client.get_hosts()  # 401, one login, the request again
        return [first.token, str(client.http.headers["Authorization"]), str(len(hosts))]

    first, now, _ = ask(api, work)
    assert now.startswith("Bearer ") and now != f"Bearer {first}"


def test_a_missing_image_task_is_not_found(api: Api) -> None:
    refused(api, lambda c: c.get_image_task(10**6), NotFound)
