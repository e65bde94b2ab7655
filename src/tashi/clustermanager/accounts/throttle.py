"""Failed-login throttling: guessing passwords through ``POST /v1/auth/token`` is slowed down.

Three budgets of failed logins, each over a sliding window of ``[Security] loginWindow`` seconds:

- **per user and address** (``loginFailures``, 5): once spent, that user's logins from that
  address are refused until the oldest failure leaves the window;
- **per address, for any users** (``loginFailuresPerSource``, 20): once spent, every login from
  that address is refused (one address spraying passwords over many user names);
- **per user, from any addresses** (``loginFailuresPerUser``, 20): once spent, the user's logins
  are refused *only from addresses that have themselves failed for that user* in the window.

The last rule is the one to think about. A user-wide lock would let anyone lock any user out
(the admin first) by failing on purpose from anywhere. Refusing nothing user-wide would let an
attacker with many addresses try ``loginFailures`` passwords from each. So, once the user's
budget is spent, every address gets one guess, not five: an address with a failure for the user
is refused, an address without one is tried, and the user typing the right password from where
they always do (where they have not failed) gets in. What it costs: an attacker with N addresses
still gets about N guesses a window; the user who mistypes once while under attack waits until
that failure leaves the window (or uses another address).

A refused attempt is answered ``Throttled`` (HTTP 429 with ``Retry-After``) *before* the password
is checked, so a refusal tells nothing about the password, and costs no scrypt. It does not count
as a failure: an attacker cannot prolong a lock by knocking. Every attempt let through counts as a
failure from the moment it starts (so 50 attempts sent at once are not all let through while the
first is being checked); a success takes it back and clears its user and address's count.

Memory is bounded: each table keeps at most ``max_keys`` keys (dropping the least recently used,
and any whose failures have all expired), each key at most its budget's timestamps; user names
are cut to 256 characters; an IPv6 address counts as its /64 (one host usually holds a whole
/64). Counts live in this process's memory, as the token cache does: one cluster manager, and a
restart forgets them. Behind a reverse proxy every client has the proxy's address; the
``X-Forwarded-For`` header is not trusted (any client can write it).

Log lines name the user (``%r``, so no line breaks get in), the address and the counts, never a
password: each failure at INFO, the failure that spends a budget at WARNING, and refusals at
WARNING at the 1st, 2nd, 4th, 8th, ... of a (user, address), so a flood cannot flood the log.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from tashi.domain.errors import Throttled

log = logging.getLogger(__name__)

MAX_KEYS = 10_000  # per table: about 1 KB a key at most, so a few MB in all
MAX_NAME = 256


@dataclass(frozen=True, slots=True)
class ThrottleRules:
    per_pair: int = 5
    per_source: int = 20
    per_user: int = 20
    window: float = 300.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login let through; hand it back with ``succeeded`` or ``failed``."""

    user: str
    source: str
    started: float


class _Failures:
    """Failure times per key over a sliding window, at most ``budget`` per key and
    ``max_keys`` keys (least recently used dropped first)."""

    def __init__(self, budget: int, window: float, max_keys: int) -> None:
        self.budget = budget
        self._window = window
        self._max_keys = max_keys
        self._keys: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def recent(self, key: Hashable, now: float) -> deque[float]:
        """The key's failures within the window, oldest first (empty if none)."""
        times = self._keys.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._keys[key]
        return times

    def spent_until(self, times: deque[float]) -> float | None:
        """When ``times`` (from ``recent``) falls below the budget again, if it is spent."""
        if len(times) < self.budget:
            return None
        return times[len(times) - self.budget] + self._window

    def add(self, key: Hashable, now: float) -> int:
        times = self._keys.get(key)
        if times is None:
            times = self._keys[key] = deque(maxlen=self.budget)
        times.append(now)
        self._keys.move_to_end(key)
        self._trim(now)
        return len(times)

    def take_back(self, key: Hashable, when: float) -> None:
        times = self._keys.get(key)
        if times is not None and when in times:
            times.remove(when)

    def clear(self, key: Hashable) -> None:
        self._keys.pop(key, None)

    def _trim(self, now: float) -> None:
        while self._keys:
            oldest, times = next(iter(self._keys.items()))
            expired = not times or times[-1] <= now - self._window
            if not expired and len(self._keys) <= self._max_keys:
                return
            del self._keys[oldest]


class LoginThrottle:
    """The three budgets of the module doc, in memory, over an injectable monotonic clock."""

    def __init__(
        self, rules: ThrottleRules, monotonic: Callable[[], float], max_keys: int = MAX_KEYS
    ) -> None:
        self.rules = rules
        self._now = monotonic
        self._pairs = _Failures(rules.per_pair, rules.window, max_keys)
        self._sources = _Failures(rules.per_source, rules.window, max_keys)
        self._users = _Failures(rules.per_user, rules.window, max_keys)
        self._refused: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._max_keys = max_keys

    def keys(self) -> int:
        """Keys held in all tables (for tests of the memory bound)."""
        return len(self._pairs) + len(self._sources) + len(self._users) + len(self._refused)

    def begin(self, username: str, source: str) -> Attempt:
        """Let a login through (counted as a failure until it succeeds) or raise ``Throttled``."""
        user, where, now = username[:MAX_NAME], source_key(source), self._now()
        pair = self._pairs.recent((user, where), now)
        ends = [
            self._pairs.spent_until(pair),
            self._sources.spent_until(self._sources.recent(where, now)),
        ]
        user_spent = self._users.spent_until(self._users.recent(user, now))
        if user_spent is not None and pair:  # only addresses that failed for this user
            ends.append(min(user_spent, pair[-1] + self.rules.window))
        until = max((end for end in ends if end is not None), default=None)
        if until is not None:
            raise self._refuse(user, where, len(pair), until - now)
        self._refused.pop((user, where), None)
        self._pairs.add((user, where), now)
        self._sources.add(where, now)
        self._users.add(user, now)
        return Attempt(user, where, now)

    def succeeded(self, attempt: Attempt) -> None:
        self._pairs.clear((attempt.user, attempt.source))
        self._sources.take_back(attempt.source, attempt.started)
        self._users.take_back(attempt.user, attempt.started)

    def withdraw(self, attempt: Attempt) -> None:
        """Forget an attempt that was neither a success nor a failure."""
        self._pairs.take_back((attempt.user, attempt.source), attempt.started)
        self._sources.take_back(attempt.source, attempt.started)
        self._users.take_back(attempt.user, attempt.started)

    def failed(self, attempt: Attempt) -> None:
        user, where = attempt.user, attempt.source
        count = len(self._pairs.recent((user, where), self._now()))
        window = self.rules.window
        log.info("failed login for user %r from %s (%d in %g s)", user, where, count, window)
        if count == self.rules.per_pair:
            log.warning(
                "logins for user %r from %s are refused for %g s: %d failures",
                user,
                where,
                window,
                count,
            )

    def _refuse(self, user: str, where: str, failures: int, wait: float) -> Throttled:
        key = (user, where)
        refused = self._refused.pop(key, 0) + 1
        self._refused[key] = refused
        while len(self._refused) > self._max_keys:
            self._refused.popitem(last=False)
        if refused & (refused - 1) == 0:  # 1, 2, 4, 8, ...
            log.warning(
                "refused login for user %r from %s: %d failures from there in %g s,"
                " %d attempts refused so far; next try in %.0f s",
                user,
                where,
                failures,
                self.rules.window,
                refused,
                wait,
            )
        return Throttled(
            f"too many failed logins; try again in {max(1, math.ceil(wait))} s", retry_after=wait
        )


def source_key(source: str) -> str:
    """The address a client's failures count against: an IPv6 address as its /64."""
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return source[:MAX_NAME]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
