"""``python -m tashi.xmpp.say``: send chat messages to ``tashi-xmpp`` and print what comes back.

A small XMPP client for trying the daemon by hand (``tashi-cluster start --xmpp`` prints how):
it logs in with the ``[XMPP]`` jid/pwd/server/port/caFile of ``--config``, sends each MESSAGE
to ``recipient`` (or ``--to``), then prints every chat message it receives (the daemon's
answers, the publisher's events) until ``--wait`` seconds pass without one.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import sys

from tashi.domain.errors import InvalidInput
from tashi.xmpp.session import Account, Session


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tashi.xmpp.say", description=__doc__)
    parser.add_argument("--config", required=True, help="a file with an [XMPP] section")
    parser.add_argument("--to", help="the JID to send to (default: [XMPP] recipient)")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds of silence to stop")
    parser.add_argument("messages", nargs="*", metavar="MESSAGE")
    return parser


async def say(account: Account, to: str, messages: list[str], wait: float) -> None:
    received: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def on_message(sender: str, body: str) -> None:
        received.put_nowait((sender, body))

    session = Session(account, on_message=on_message, reconnect_max=2.0)
    runner = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(session.connected.wait(), 30)
        for message in messages:
            session.send(to, message)
        while True:
            try:
                sender, body = await asyncio.wait_for(received.get(), wait)
            except TimeoutError:
                return
            print(f"{sender.partition('/')[0]}: {body}", flush=True)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(args.config) or not parser.has_section("XMPP"):
        print(f"say: no [XMPP] section in {args.config}", file=sys.stderr)
        return 2
    xmpp = parser["XMPP"]
    try:
        account = Account(
            xmpp.get("jid", ""),
            xmpp.get("pwd", ""),
            server=xmpp.get("server", ""),
            port=int(xmpp.get("port", "5222")),
            ca_file=xmpp.get("caFile", ""),
            resource="say",
        )
    except InvalidInput as exc:
        print(f"say: {exc.message}", file=sys.stderr)
        return 2
    to = args.to or xmpp.get("recipient", "")
    try:
        asyncio.run(say(account, to, args.messages, args.wait))
    except TimeoutError:
        print("say: could not log in within 30 s", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
