"""``tashi.xmpp.session.Session`` against a real prosody on a loopback port: it logs in over
STARTTLS (checking the server's certificate), delivers chat both ways, refuses a bad password
and a certificate it does not trust, and comes back by itself after the server was killed
and started again."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.devcluster.prosody import Prosody
from tashi.xmpp.session import Account, Session, backoff
from tests.xmpp.client import Ism


@pytest.fixture
def prosody(tmp_path: Path) -> Iterator[Prosody]:
    server = Prosody(tmp_path / "prosody")
    server.register("agent", "agent-password")
    server.register("peer", "peer-password")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def account(server: Prosody, password: str = "agent-password", ca: str | None = None) -> Account:
    return Account(
        server.jid("agent"),
        password,
        server=server.host,
        port=server.port,
        ca_file=ca or str(server.ca_file),
    )


async def peer_of(server: Prosody) -> Ism:
    peer = Ism(server.jid("peer"), "peer-password", str(server.ca_file))
    await peer.start(server.host, server.port)
    return peer


def test_chat_both_ways_and_back_after_the_server_was_killed(prosody: Prosody) -> None:
    async def scenario() -> None:
        heard: list[tuple[str, str]] = []

        async def on_message(sender: str, body: str) -> None:
            heard.append((sender, body))

        session = Session(account(prosody), on_message=on_message, reconnect_max=1.0)
        runner = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(session.connected.wait(), 20)
            peer = await peer_of(prosody)
            assert session.send(prosody.jid("peer"), "hello peer")
            await peer.wait_for("hello", lambda got: any(r.body == "hello peer" for r in got), 10)
            peer.say(prosody.jid("agent"), "hello agent")
            while not heard:
                await asyncio.sleep(0.05)
            assert heard[0][0].startswith(prosody.jid("peer") + "/")
            assert heard[0][1] == "hello agent"
            await peer.close()

            await asyncio.to_thread(prosody.kill)
            while session.connected.is_set():
                await asyncio.sleep(0.05)
            assert not session.send(prosody.jid("peer"), "lost")  # nothing to send it on
            await asyncio.sleep(2)  # a few attempts fail meanwhile
            await asyncio.to_thread(prosody.start)
            await asyncio.wait_for(session.connected.wait(), 10)
            assert session.connections == 2
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(scenario())


def test_a_wrong_password_or_an_untrusted_certificate_never_logs_in(
    prosody: Prosody, tmp_path: Path
) -> None:
    other = Prosody(tmp_path / "other", port=1)  # only for its certificate: another authority

    async def attempt(acct: Account) -> bool:
        session = Session(acct, reconnect_max=0.5)
        runner = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(session.connected.wait(), 4)
            return True
        except TimeoutError:
            return False
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    assert not asyncio.run(attempt(account(prosody, password="wrong-password")))
    assert not asyncio.run(attempt(account(prosody, ca=str(other.ca_file))))
    assert asyncio.run(attempt(account(prosody)))


def test_say_sends_and_prints_what_comes_back(prosody: Prosody, tmp_path: Path) -> None:
    """``python -m tashi.xmpp.say``, the hand-driven client tashi-cluster start --xmpp shows."""
    config = tmp_path / "say.cfg"
    config.write_text(
        "[XMPP]\n"
        f"jid = {prosody.jid('agent')}\npwd = agent-password\n"
        f"server = {prosody.host}\nport = {prosody.port}\ncaFile = {prosody.ca_file}\n"
        f"recipient = {prosody.jid('peer')}\n"
    )

    async def scenario() -> str:
        peer = await peer_of(prosody)
        try:
            say = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tashi.xmpp.say", "--config", str(config), "--wait", "3",
                "createcompute {}",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            await peer.wait_for("the message", lambda got: bool(got), 30)
            assert peer.inbox[0].body == "createcompute {}"
            peer.say(prosody.jid("agent"), '{"status": "accepted"}')
            out, _ = await asyncio.wait_for(say.communicate(), 30)
            assert say.returncode == 0, out
            return out.decode()
        finally:
            await peer.close()

    printed = asyncio.run(scenario())
    assert f'{prosody.jid("peer")}: {{"status": "accepted"}}' in printed


def test_the_back_off_doubles_from_half_a_second_to_the_cap() -> None:
    waits = [backoff(n, 30.0, 1.0) for n in range(1, 9)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(3, 30.0, 0.0) == 1.0  # at least half of it


def test_messages_kept_offline_are_answered_at_login(prosody: Prosody) -> None:
    """What came while the agent was away is handed over as its session starts (prosody's
    offline storage); the answers go out on that session, not lost for want of one."""

    async def scenario() -> None:
        peer = await peer_of(prosody)
        session: Session | None = None

        async def echo(sender: str, body: str) -> None:
            assert session is not None
            assert session.send(sender, f"re: {body}")

        try:
            for n in range(3):
                peer.say(prosody.jid("agent"), f"while away {n}")
            await asyncio.sleep(0.5)  # stored by the server
            session = Session(account(prosody), on_message=echo, reconnect_max=1.0)
            runner = asyncio.create_task(session.run())
            try:
                await peer.wait_for("three answers", lambda got: len(got) == 3, 20)
                assert sorted(r.body for r in peer.inbox) == [
                    f"re: while away {n}" for n in range(3)
                ]
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
        finally:
            await peer.close()

    asyncio.run(scenario())
