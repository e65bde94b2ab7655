"""``tashi-xmpp``: SLA@SOI's XMPP control daemon. Takes chat commands until SIGTERM.

Configuration: the Agent program's files (``Agent.cfg``; see ``tashi.config.loader``):
``[XMPP]`` (jid, pwd, server, port, caFile, allowed, imageMap, slaShares, owner, waitTimeout),
``[Client] clusterManagerHost/clusterManagerPort`` for the cluster manager, and
``[AccessClusterManager]`` for the credentials of its Tashi user: an admin, so that
registerUser/unregisterUser and ``owner`` work (``tashi registerUser --name xmpp --passwd '…'
--role admin``). See docs/xmpp.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import NoReturn

import tashi
from tashi.apiclient.client import ApiClient, base_url
from tashi.config.loader import load_raw, parse_settings
from tashi.config.settings import Settings
from tashi.config.xmpp import XmppSettings
from tashi.domain.errors import InvalidInput, TashiError
from tashi.runtime import logs
from tashi.runtime.tasks import Supervisor
from tashi.xmpp.control import Controller, ControlOptions, jid_list, pairs
from tashi.xmpp.outbox import Document, Outbox, drain
from tashi.xmpp.session import Account, Session

log = logging.getLogger("tashi.xmpp")

CONNECT_SECONDS = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tashi-xmpp",
        description="The Tashi XMPP control daemon (SLA@SOI): createcompute, deletecompute,"
        " adaptcompute, registerUser and unregisterUser as chat messages.",
        epilog="Configuration: TashiDefaults.cfg, Tashi.cfg, AgentDefaults.cfg and Agent.cfg in"
        " ./etc/, /usr/share/tashi/, /etc/tashi/ and ~/.tashi/, then TASHI_CONFIG: [XMPP] jid,"
        " pwd, allowed, ...; [AccessClusterManager] username/password of an admin. See"
        " docs/xmpp.md.",
    )
    parser.add_argument("--version", action="version", version=f"tashi-xmpp {tashi.__version__}")
    return parser


def account_of(xmpp: XmppSettings, resource: str) -> Account:
    return Account(
        xmpp.jid,
        xmpp.pwd,
        server=xmpp.server,
        port=xmpp.port,
        ca_file=xmpp.ca_file,
        resource=resource,
    )


def options_of(xmpp: XmppSettings, owner_id: int | None = None) -> ControlOptions:
    allowed = jid_list(xmpp.allowed)
    if not allowed:
        raise InvalidInput("[XMPP] allowed is empty: no one could use the daemon")
    shares: dict[str, int] = {}
    for level, value in pairs("slaShares", xmpp.sla_shares).items():
        if not value.isdigit():
            raise InvalidInput(f"[XMPP] slaShares: {level}={value}: the share must be a number")
        shares[level] = int(value)
    return ControlOptions(
        allowed=allowed,
        images=pairs("imageMap", xmpp.image_map),
        sla_shares=shares,
        owner_id=owner_id,
        wait_timeout=xmpp.wait_timeout,
    )


def client_of(settings: Settings) -> ApiClient:
    access, where = settings.access_cluster_manager, settings.client
    if not access.token and not (access.username and access.password):
        raise TashiError(
            "no credentials for the cluster manager: set [AccessClusterManager] username and"
            " password (an admin) in Agent.cfg"
        )
    return ApiClient(
        base_url(where.cluster_manager_host, where.cluster_manager_port),
        username=access.username or None,
        password=access.password if access.username else None,
        token=access.token or None,
        timeout=where.cluster_manager_timeout,
        connect_timeout=CONNECT_SECONDS,
    )


async def run(settings: Settings) -> None:
    xmpp = settings.xmpp
    api = client_of(settings)
    try:
        await api.login()  # once, before any message (not once per concurrent first call)
        owner_id = (await api.get_user(xmpp.owner)).id if xmpp.owner else None
        # Answers wait here while the server is away (a VM that ran meanwhile is told later).
        answers = Outbox(xmpp.queue_size)
        controller = Controller(
            api,
            options_of(xmpp, owner_id),
            lambda to, body: answers.put({"to": to, "body": body}),
        )
        await controller.recover()  # what a stopped daemon still owed an answer
        session = Session(
            account_of(xmpp, "tashi-xmpp"),
            on_message=controller.handle,
            reconnect_max=xmpp.reconnect_max,
        )

        async def send(answer: Document) -> bool:
            return session.send(answer["to"], answer["body"])

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        supervisor = Supervisor()
        supervisor.every("xmpp-session", 0.0, session.run)
        supervisor.every("xmpp-completions", 1.0, controller.watch)
        supervisor.every("xmpp-answers", 0.05, lambda: drain(answers, session.connected, send))
        log.info(
            "tashi-xmpp %s: %s, cluster manager %s, allowed %s",
            tashi.__version__,
            xmpp.jid,
            api.base_url,
            ", ".join(sorted(jid_list(xmpp.allowed))),
        )
        await stop.wait()
        log.info("stopping")
        await supervisor.stop()
    finally:
        await api.close()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    _parser().parse_args(argv)
    try:
        settings = parse_settings(load_raw("Agent"))
        account_of(settings.xmpp, "tashi-xmpp")
        options_of(settings.xmpp)
    except InvalidInput as exc:
        print(f"tashi-xmpp: configuration error: {exc.message}", file=sys.stderr)
        return 2
    logs.setup(settings.logging.level, as_json=settings.logging.json, program="tashi-xmpp")
    os.umask(0o077)
    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        return 0
    except (TashiError, OSError) as exc:
        print(f"tashi-xmpp: {exc}", file=sys.stderr)
        return 1
    _exit_now()


def _exit_now() -> NoReturn:
    """Exit with 0 at once, once ``run`` has closed all it opened: the interpreter's own
    teardown (every object freed, module by module) frees nothing that outlives the process,
    and took up to 1.4 s of a loaded machine's CPU after a SIGTERM (docs/xmpp.md)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
