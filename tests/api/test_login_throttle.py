"""Failed logins throttled through the real HTTP app (rules:
``clustermanager/accounts/throttle.py``).

The test client's address is ``testclient``; a second client on the same app, with another
address, plays the user logging in from elsewhere. Time is a ``FakeClock``: no test sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tashi.api import paths
from tashi.domain.clock import FakeClock
from tests.api.conftest import Api, start_api

WRONG = "not-the-password-42"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    yield from start_api("sqlite", tmp_path, clock=clock)


def elsewhere(api: Api, address: str) -> TestClient:
    return TestClient(api.http.app, client=(address, 40000))


def login(http: TestClient, user: str, password: str) -> tuple[int, dict[str, str], dict[str, str]]:
    reply = http.post(paths.TOKEN, json={"username": user, "password": password})
    return reply.status_code, dict(reply.headers), reply.json()


def test_failures_lead_to_429_with_retry_after(api: Api, clock: FakeClock) -> None:
    assert [login(api.http, "admin", WRONG)[0] for _ in range(5)] == [401] * 5
    status, headers, body = login(api.http, "admin", WRONG)
    assert status == 429
    assert headers["retry-after"] == "300"
    assert body["error"]["code"] == "throttled"
    assert "try again in 300 s" in body["error"]["message"]
    # Refused before the password is checked: the right one does not get in either.
    assert login(api.http, "admin", api.admin_password)[0] == 429
    clock.advance(120)
    assert login(api.http, "admin", api.admin_password)[1]["retry-after"] == "180"
    clock.advance(180)
    assert login(api.http, "admin", api.admin_password)[0] == 200


def test_a_success_resets_the_count(api: Api) -> None:
    for _ in range(3):
        assert [login(api.http, "admin", WRONG)[0] for _ in range(4)] == [401] * 4
        assert login(api.http, "admin", api.admin_password)[0] == 200


def test_the_user_logs_in_from_another_address(api: Api) -> None:
    for _ in range(7):
        login(api.http, "admin", WRONG)
    assert login(api.http, "admin", WRONG)[0] == 429
    assert login(elsewhere(api, "10.20.30.40"), "admin", api.admin_password)[0] == 200


def test_an_attack_from_many_addresses_does_not_lock_out_the_user(api: Api) -> None:
    for i in range(5):
        attacker = elsewhere(api, f"198.51.100.{i}")
        assert [login(attacker, "admin", WRONG)[0] for _ in range(4)] == [401] * 4
    # admin's budget across addresses is spent: an address that failed is refused ...
    assert login(elsewhere(api, "198.51.100.0"), "admin", api.admin_password)[0] == 429
    # ... one that did not is not, even after this test client's own failures
    assert login(elsewhere(api, "203.0.113.5"), "admin", api.admin_password)[0] == 200
    assert login(api.http, "admin", api.admin_password)[0] == 200


def test_one_address_trying_many_users_is_refused(api: Api) -> None:
    for i in range(20):
        assert login(api.http, f"user{i}", WRONG)[0] == 401
    assert login(api.http, "admin", api.admin_password)[0] == 429
    assert login(elsewhere(api, "10.20.30.40"), "admin", api.admin_password)[0] == 200


def test_refusals_are_logged_without_the_password(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tashi.clustermanager.accounts.throttle")
    for _ in range(8):
        login(api.http, "admin", WRONG)
    text = caplog.text
    assert "refused login for user 'admin' from testclient: 5 failures" in text
    assert "failed login for user 'admin' from testclient (5 in 300 s)" in text
    assert WRONG not in text
