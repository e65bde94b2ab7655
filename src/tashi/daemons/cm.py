"""``tashi-cm``: the cluster manager daemon.

Reads the ClusterManager configuration, takes the database's hold (one cluster manager per
database, ``storage/sql/hold.py``), opens (and migrates) the database, creates the first admin
if there is none, and serves the HTTP API until SIGINT/SIGTERM, which stop it within about a
second (``web/stop.py``: the change feed's long-polls are answered at once).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import tashi
from tashi.clustermanager.hosts import gateway
from tashi.clustermanager.hosts.gateway import HttpNodeGateway
from tashi.clustermanager.service import ClusterService, build_service
from tashi.config import ConfigError, load_settings
from tashi.config.settings import Settings
from tashi.domain.errors import TashiError
from tashi.frontends.rest.app import create_app
from tashi.runtime import filelimit, logs
from tashi.runtime.tasks import Supervisor
from tashi.storage.contract import Store
from tashi.web.limits import HttpLimits
from tashi.web.stop import Server

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from tashi.storage.sql.hold import Hold

log = logging.getLogger("tashi.cm")

TOKEN_PURGE_INTERVAL = 3600.0
DEADLINE_INTERVAL = 5.0
HA_INTERVAL = 1.0  # how often a lost host's expired lease is looked for (ADR 0010)
HOLD_INTERVAL = 1.0  # how often the database's hold is checked (taken again after an outage)
VOLUME_INTERVAL = 10.0  # how often volumes a restart or a lost answer left half done are finished


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tashi-cm",
        description="The Tashi cluster manager: owns the cluster state and serves the API.",
        epilog="Configuration comes from TashiDefaults.cfg, Tashi.cfg, ClusterManagerDefaults.cfg"
        " and ClusterManager.cfg in ./etc/, /usr/share/tashi/, /etc/tashi/ and ~/.tashi/ (later"
        " files win), then the file named by TASHI_CONFIG.",
    )
    parser.add_argument("--version", action="version", version=f"tashi-cm {tashi.__version__}")
    parser.add_argument(
        "--check",
        action="store_true",
        help="read the configuration, open and migrate the database, then exit",
    )
    return parser


def hold_database(settings: Settings) -> Hold:
    """The hold of ``[SQL]``'s database that makes this its one cluster manager; raises
    ``HeldElsewhere`` (a ``TashiError``) while another has it."""
    from tashi.storage.sql.engine import url_from_settings
    from tashi.storage.sql.hold import take_hold

    return take_hold(url_from_settings(settings.sql, settings.cluster_manager.state_dir))


def open_store(settings: Settings) -> Store:
    """The SQL store named by ``[SQL] uri`` (SQLite in stateDir by default), migrated."""
    from tashi.storage.sql.store import open_store as open_sql_store

    return open_sql_store(settings.sql, settings.cluster_manager.state_dir)


def prepare_state_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


async def _check_file_limit(service: ClusterService) -> None:
    """Raise the open-file limit as far as allowed; warn when it is short for the hosts."""
    limit = filelimit.raise_soft()
    hosts = await service.db.read(lambda tx: len(tx.hosts.list()))
    warning = filelimit.shortfall(limit, hosts, "hosts")
    if warning is not None:
        log.warning("%s", warning)


async def serve(settings: Settings, service: ClusterService, hold: Hold) -> None:
    """Serve until SIGTERM/SIGINT; raises ``HeldElsewhere`` if another cluster manager took
    the database while the hold's session was lost (this one then stops)."""
    svc = settings.cluster_manager_service
    credentials = settings.cluster_manager.state_dir / settings.cluster_manager.admin_credentials
    await service.auth.ensure_admin(credentials, host=svc.host, port=svc.port)
    await _check_file_limit(service)
    limits = HttpLimits.of(svc)
    ec2 = ec2_server(settings, service, limits)
    extra = [x for x in (ec2, occi_server(settings, service, limits)) if x is not None]
    supervisor = Supervisor()
    if settings.xmpp.enabled:  # SLA@SOI's event publisher (docs/xmpp.md); slixmpp only then
        from tashi.xmpp.publisher import start as start_xmpp_publisher

        start_xmpp_publisher(settings.xmpp, service, supervisor)
    supervisor.every("purge-expired-tokens", TOKEN_PURGE_INTERVAL, service.auth.purge_expired)
    supervisor.every("purge-history", service.history.INTERVAL, service.history.purge)
    supervisor.every("host-liveness", max(0.5, svc.expire_host_time / 3), service.liveness.check)
    supervisor.every("deadlines", DEADLINE_INTERVAL, service.deadlines.check)
    supervisor.every("volumes", VOLUME_INTERVAL, service.volumes.reconcile)  # what was left
    supervisor.every("security-groups", 0.0, service.firewalls.step)  # it waits for changes
    supervisor.every("node-connections", gateway.IDLE / 2, service.nodes.sweep)
    supervisor.every("host-renewals", 0.0, service.renewals.step)  # it waits for renewals
    if service.ha.enabled:
        supervisor.every("ha-restart", HA_INTERVAL, service.ha.check)
    app = create_app(service, limits)
    server = Server(
        app,
        what="the cluster manager",
        host=svc.host,
        port=svc.port,
        limits=limits,
        stopping=[service.db.feed.close],
    )
    for listener in extra:
        server.add_stopping(listener.stop)
    lost: list[TashiError] = []
    supervisor.every("database-hold", HOLD_INTERVAL, lambda: keep_hold(hold, server, lost))
    # Everything allocated so far (modules, the app, settings) lives as long as the process:
    # move it out of the collector's sight so that full collections, which large listings
    # trigger, only walk what requests allocate.
    gc.collect()
    gc.freeze()
    log.info("tashi-cm %s serving on http://%s:%d", tashi.__version__, svc.host, svc.port)
    try:
        await asyncio.gather(server.serve(), *(x.serve() for x in extra))
    finally:
        await supervisor.stop()
        await service.aclose()
    if lost:
        raise lost[0]
    log.info("stopped")


class Ec2Listener:
    """A second API's server (EC2, OCCI) on the socket it was given; stopped when the main
    one stops."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self._server = server
        self._socket = sock

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._socket])

    def stop(self) -> None:
        self._server.should_exit = True


def ec2_server(
    settings: Settings, service: ClusterService, limits: HttpLimits
) -> Ec2Listener | None:
    """The EC2 API's listener (``[Ec2]``), or ``None`` when it is off or its port cannot be had.

    Its address is bound here, before anything is served: one that is taken is logged as an
    error and the cluster manager goes on without the EC2 API (its own API, the node managers
    and the scheduler need none of it)."""
    from tashi.frontends.ec2.app import create_app as create_ec2_app
    from tashi.frontends.ec2.context import Ec2Context

    ec2 = settings.ec2
    if not ec2.enabled:
        return None
    host = ec2.host or settings.cluster_manager_service.host
    try:
        ctx = Ec2Context.build(service, ec2, settings.instance_types, endpoint=f"{host}:{ec2.port}")
    except TashiError as exc:
        raise ConfigError(exc.message) from exc
    return second_listener(create_ec2_app(ctx), "the EC2 API", host, ec2.port, limits)


def occi_server(
    settings: Settings, service: ClusterService, limits: HttpLimits
) -> Ec2Listener | None:
    """The OCCI API's listener (``[OCCI]``), as ``ec2_server``: ``None`` when it is off or its
    port cannot be had; with TLS when ``certFile`` and ``keyFile`` are set."""
    from tashi.frontends.occi.app import create_app as create_occi_app
    from tashi.frontends.occi.context import OcciContext

    occi = settings.occi
    if not occi.enabled:
        return None
    try:
        zone = settings.ec2.zones.split(",")[0].strip()
        ctx = OcciContext.build(
            service,
            occi,
            settings.instance_types,
            state_dir=settings.cluster_manager.state_dir,
            zone=zone or "tashi-1a",
        )
    except TashiError as exc:
        raise ConfigError(exc.message) from exc
    if bool(occi.cert_file) != bool(occi.key_file):
        raise ConfigError("[OCCI] certFile and keyFile go together (both or neither)")
    host = occi.host or settings.cluster_manager_service.host
    tls = (occi.cert_file, occi.key_file) if occi.cert_file else None
    # GFD.223: the Server header says OCCI/1.2; the app writes it, uvicorn's own is left out
    return second_listener(
        create_occi_app(ctx), "the OCCI API", host, occi.port, limits, tls=tls, header=False
    )


def second_listener(
    app: Starlette,
    what: str,
    host: str,
    port: int,
    limits: HttpLimits,
    *,
    tls: tuple[str, str] | None = None,
    header: bool = True,
) -> Ec2Listener | None:
    """A server of ``app`` on ``host:port`` (``tls``: its certificate and key files), bound
    now; ``None``, logged as an error, when the port cannot be had."""
    shown = f"{host}:{port}"
    try:
        sock = bind(host, port)
    except OSError as exc:
        log.error("%s is off: it cannot listen on %s: %s", what, shown, exc.strerror)
        return None
    server = Server(app, what=what, host=host, port=port, limits=limits, signals=False)
    server.config.server_header = header
    if tls is not None:
        server.config.ssl_certfile, server.config.ssl_keyfile = tls
    log.info("%s serves on %s://%s", what, "https" if tls else "http", shown)
    return Ec2Listener(server, sock)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``OSError`` if it cannot be had)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


async def keep_hold(hold: Hold, server: Server, lost: list[TashiError]) -> None:
    """Renew the database's hold; stop the server if another cluster manager has it now."""
    from tashi.storage.sql.hold import HeldElsewhere

    try:
        await asyncio.to_thread(hold.renew)
    except HeldElsewhere as exc:
        log.critical("%s", exc.message)
        lost.append(exc)
        server.should_exit = True


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.umask(0o077)  # the database and credential files are the cluster's secrets
    try:
        settings = load_settings("ClusterManager")
    except ConfigError as exc:
        print(f"tashi-cm: configuration error: {exc.message}", file=sys.stderr)
        return 2
    logs.setup(settings.logging.level, as_json=settings.logging.json, program="tashi-cm")
    try:
        prepare_state_dir(settings.cluster_manager.state_dir)
        hold = hold_database(settings)
    except (TashiError, OSError) as exc:
        print(f"tashi-cm: cannot start: {exc}", file=sys.stderr)
        return 1
    log.info("this cluster manager holds the database %s", hold.where)
    try:
        return run(settings, hold, check=args.check)
    finally:
        hold.release()


def run(settings: Settings, hold: Hold, *, check: bool) -> int:
    """Open the database and serve it (or only check it), holding it."""
    try:
        store = open_store(settings)
    except (TashiError, OSError) as exc:
        print(f"tashi-cm: cannot start: {exc}", file=sys.stderr)
        return 1
    service = build_service(settings, store, nodes=HttpNodeGateway)
    try:
        if check:
            print(f"tashi-cm: configuration and database are fine ({settings.sql.uri or 'SQLite'})")
            return 0
        asyncio.run(serve(settings, service, hold))
    except KeyboardInterrupt:
        return 0
    except TashiError as exc:
        print(f"tashi-cm: {exc.message}", file=sys.stderr)
        return 1
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
