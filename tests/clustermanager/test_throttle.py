"""``LoginThrottle`` on fake time: the three budgets, what a success undoes, the memory bound."""

from __future__ import annotations

import logging

import pytest

from tashi.clustermanager.accounts.throttle import LoginThrottle, ThrottleRules, source_key
from tashi.domain.clock import FakeClock
from tashi.domain.errors import Throttled

RULES = ThrottleRules(per_pair=5, per_source=20, per_user=20, window=300.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(RULES, clock.monotonic)


def fail(throttle: LoginThrottle, user: str, source: str, times: int = 1) -> None:
    for _ in range(times):
        throttle.failed(throttle.begin(user, source))


def refused(throttle: LoginThrottle, user: str, source: str) -> Throttled:
    with pytest.raises(Throttled) as caught:
        throttle.begin(user, source)
    return caught.value


def test_five_failures_lock_that_user_at_that_address(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    fail(throttle, "admin", "10.0.0.1", 4)
    clock.advance(60)
    fail(throttle, "admin", "10.0.0.1")
    error = refused(throttle, "admin", "10.0.0.1")
    assert error.retry_after == pytest.approx(240)  # the oldest failure leaves the window then
    assert error.code == "throttled"
    throttle.begin("alice", "10.0.0.1")  # another user from there
    throttle.begin("admin", "10.0.0.2")  # that user from elsewhere
    clock.advance(239)
    refused(throttle, "admin", "10.0.0.1")
    clock.advance(1)
    throttle.begin("admin", "10.0.0.1")  # one failure left the window: one more try


def test_a_refusal_is_not_a_failure(throttle: LoginThrottle, clock: FakeClock) -> None:
    fail(throttle, "admin", "10.0.0.1", 5)
    for _ in range(100):
        refused(throttle, "admin", "10.0.0.1")
    clock.advance(300)
    throttle.begin("admin", "10.0.0.1")


def test_a_success_clears_its_user_and_address(throttle: LoginThrottle) -> None:
    fail(throttle, "admin", "10.0.0.1", 4)
    throttle.succeeded(throttle.begin("admin", "10.0.0.1"))
    fail(throttle, "admin", "10.0.0.1", 4)
    throttle.begin("admin", "10.0.0.1")  # 4 failures since the success: still let through


def test_attempts_in_flight_count(throttle: LoginThrottle) -> None:
    """Fifty logins sent at once are not all let through while the first is checked."""
    started = [throttle.begin("admin", "10.0.0.1") for _ in range(5)]
    refused(throttle, "admin", "10.0.0.1")
    throttle.succeeded(started[0])  # the right password, after all: the count is cleared
    throttle.begin("admin", "10.0.0.1")


def test_a_withdrawn_attempt_does_not_count(throttle: LoginThrottle) -> None:
    for _ in range(10):
        throttle.withdraw(throttle.begin("admin", "10.0.0.1"))
    throttle.begin("admin", "10.0.0.1")


def test_one_address_spraying_many_users_is_locked(throttle: LoginThrottle) -> None:
    for i in range(20):
        fail(throttle, f"user{i}", "10.0.0.9")
    error = refused(throttle, "someone-else", "10.0.0.9")
    assert error.retry_after == pytest.approx(300)
    throttle.begin("someone-else", "10.0.0.10")


def test_a_user_attacked_from_many_addresses_still_logs_in_from_a_clean_one(
    throttle: LoginThrottle,
) -> None:
    for i in range(5):
        fail(throttle, "admin", f"10.1.0.{i}", 4)  # 20 failures, none locks its own address
    refused(throttle, "admin", "10.1.0.0")  # an address that failed for admin: one strike
    refused(throttle, "admin", "10.1.0.4")
    attempt = throttle.begin("admin", "192.168.7.7")  # where admin has not failed: tried
    throttle.succeeded(attempt)
    throttle.succeeded(throttle.begin("admin", "192.168.7.7"))
    fail(throttle, "admin", "192.168.7.8")  # a new address gets one guess, not five
    refused(throttle, "admin", "192.168.7.8")
    throttle.begin("bob", "10.1.0.0")  # other users from the attacking addresses: tried


def test_memory_is_bounded(clock: FakeClock) -> None:
    throttle = LoginThrottle(RULES, clock.monotonic, max_keys=100)
    for i in range(5000):
        fail(throttle, f"user{i}", f"10.2.{i // 256}.{i % 256}")
    assert throttle.keys() <= 300
    clock.advance(301)
    fail(throttle, "x", "10.9.9.9")
    assert throttle.keys() <= 3  # expired keys go as new ones come


def test_a_long_user_name_is_cut(throttle: LoginThrottle) -> None:
    long = "a" * 10_000
    fail(throttle, long + "1", "10.0.0.1", 5)
    refused(throttle, long + "2", "10.0.0.1")  # the same first 256 characters: the same key


def test_source_keys() -> None:
    assert source_key("10.0.0.1") == "10.0.0.1"
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert source_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert source_key("testclient") == "testclient"


def test_the_log_names_user_address_and_count_never_the_password(
    throttle: LoginThrottle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tashi.clustermanager.accounts.throttle")
    fail(throttle, "admin\nforged", "10.0.0.1", 5)
    for _ in range(9):
        refused(throttle, "admin\nforged", "10.0.0.1")
    failures = [r for r in caplog.records if r.getMessage().startswith("failed login")]
    assert len(failures) == 5
    assert "'admin\\nforged' from 10.0.0.1 (5 in 300 s)" in failures[-1].getMessage()
    locks = [r for r in caplog.records if "are refused for" in r.getMessage()]
    assert len(locks) == 1 and locks[0].levelno == logging.WARNING
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert [m.split(" attempts refused")[0].rsplit(" ", 1)[1] for m in refusals] == [
        "1",
        "2",
        "4",
        "8",
    ]
