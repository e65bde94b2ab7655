"""The cluster manager's hold of its database (``storage/sql/hold.py``) on SQLite and on real
PostgreSQL and MariaDB servers: one holder at a time, let go when its process dies however it
dies, and taken again (or found taken) after the database server restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from sqlalchemy.engine import make_url

from tashi.devcluster.processes import kill_child
from tashi.storage.sql.hold import HOLD_WAIT, LOCK_SUFFIX, HeldElsewhere, take_hold
from tests.fixtures.dbservers import KIND_PARAMS, FreshDatabase, Server

KINDS = KIND_PARAMS
# A process that takes the hold, says so, and waits to be killed.
HOLDER = """
import sys
from sqlalchemy.engine import make_url
from tashi.storage.sql.hold import take_hold
take_hold(make_url(sys.argv[1]), owner="the crashed one")
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, fresh_database: Callable[[str], FreshDatabase]) -> str:
    return fresh_database(request.param).url


def test_a_second_holder_is_refused_while_the_first_holds(url: str) -> None:
    first = take_hold(make_url(url), owner="the first one")
    try:
        with pytest.raises(HeldElsewhere) as refused:
            take_hold(make_url(url), wait=0, owner="the second one")
        message = refused.value.message
        assert "another cluster manager holds the database" in message
        assert make_url(url).database in message  # the database, named
        assert (make_url(url).password or "\0") not in message
        if not url.startswith("mysql"):  # MariaDB names the holder's connection, not its owner
            assert "the first one" in message
    finally:
        first.release()
    second = take_hold(make_url(url), wait=0, owner="the second one")
    second.release()


def test_a_starting_holder_waits_for_one_that_lets_go(url: str) -> None:
    first = take_hold(make_url(url))
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # the first poll finds it held; then the first stops
        polls.append(seconds)
        first.release()

    second = take_hold(make_url(url), wait=HOLD_WAIT, sleep=sleep)
    second.release()
    assert len(polls) == 1


def test_a_killed_holders_hold_is_free_at_once(url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(HeldElsewhere, match="holds the database"):
            take_hold(make_url(url), wait=0)
    finally:
        kill_child(holder)
    started = time.monotonic()
    take_hold(make_url(url)).release()
    print(f"\nhold taken {time.monotonic() - started:.3f} s after the holder's SIGKILL")


def test_sqlite_names_its_holder_in_a_private_file_beside_the_database(
    fresh_database: Callable[[str], FreshDatabase],
) -> None:
    database = make_url(fresh_database("sqlite").url).database
    assert database is not None
    hold = take_hold(make_url(f"sqlite:///{database}"), owner="tashi-cm pid 1 on here")
    try:
        lock = f"{database}{LOCK_SUFFIX}"
        with open(lock) as handle:
            assert handle.read() == "tashi-cm pid 1 on here\n"
        assert os.stat(lock).st_mode & 0o777 == 0o600
    finally:
        hold.release()


def test_a_restarted_server_gives_the_hold_back_to_its_holder(own_server: Server) -> None:
    url = make_url(own_server.create_database())
    hold = take_hold(url, owner="the holder")
    try:
        own_server.halt()
        hold.renew()  # the database is away: nothing to do but wait for it
        own_server.restart()
        hold.renew()  # its session died with the server: taken again on a new one
        with pytest.raises(HeldElsewhere, match="holds the database"):
            take_hold(url, wait=0)
        hold.renew()
    finally:
        hold.release()


def test_a_holder_that_finds_its_hold_taken_after_a_restart_gives_way(
    own_server: Server,
) -> None:
    url = make_url(own_server.create_database())
    hold = take_hold(url, owner="the old one")
    try:
        own_server.halt()
        own_server.restart()
        newcomer = take_hold(url, wait=0, owner="the new one")  # first after the restart
        try:
            with pytest.raises(HeldElsewhere, match="took the database") as lost:
                hold.renew()
            if own_server.kind == "postgres":
                assert "the new one" in lost.value.message
        finally:
            newcomer.release()
    finally:
        hold.release()
