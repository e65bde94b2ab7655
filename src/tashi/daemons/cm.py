"""``tashi-cm``: the cluster manager daemon.

Reads the ClusterManager configuration, opens (and migrates) the database, creates the first
admin if there is none, and serves the HTTP API until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from pathlib import Path

import uvicorn

import tashi
from tashi.clustermanager.gateway import HttpNodeGateway
from tashi.clustermanager.service import ClusterService, build_service
from tashi.config import ConfigError, load_settings
from tashi.config.settings import Settings
from tashi.domain.errors import TashiError
from tashi.frontends.rest.app import create_app
from tashi.runtime import logs
from tashi.runtime.tasks import Supervisor
from tashi.storage.contract import Store
from tashi.web.limits import HttpLimits
from tashi.web.server import server_config

log = logging.getLogger("tashi.cm")

TOKEN_PURGE_INTERVAL = 3600.0
DEADLINE_INTERVAL = 5.0
HA_INTERVAL = 1.0  # how often a lost host's expired lease is looked for (ADR 0010)


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


def open_store(settings: Settings) -> Store:
    """The SQL store named by ``[SQL] uri`` (SQLite in stateDir by default), migrated."""
    from tashi.storage.sql.store import open_store as open_sql_store

    return open_sql_store(settings.sql, settings.cluster_manager.state_dir)


def prepare_state_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


async def serve(settings: Settings, service: ClusterService) -> None:
    svc = settings.cluster_manager_service
    credentials = settings.cluster_manager.state_dir / settings.cluster_manager.admin_credentials
    await service.auth.ensure_admin(credentials, host=svc.host, port=svc.port)
    supervisor = Supervisor()
    supervisor.every("purge-expired-tokens", TOKEN_PURGE_INTERVAL, service.auth.purge_expired)
    supervisor.every("host-liveness", max(0.5, svc.expire_host_time / 3), service.liveness.check)
    supervisor.every("deadlines", DEADLINE_INTERVAL, service.deadlines.check)
    if service.ha.enabled:
        supervisor.every("ha-restart", HA_INTERVAL, service.ha.check)
    limits = HttpLimits.of(svc)
    config = server_config(create_app(service, limits), host=svc.host, port=svc.port, limits=limits)
    server = uvicorn.Server(config)
    # Everything allocated so far (modules, the app, settings) lives as long as the process:
    # move it out of the collector's sight so that full collections, which large listings
    # trigger, only walk what requests allocate.
    gc.collect()
    gc.freeze()
    log.info("tashi-cm %s serving on http://%s:%d", tashi.__version__, svc.host, svc.port)
    try:
        await server.serve()
    finally:
        await supervisor.stop()
        await service.aclose()


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
        store = open_store(settings)
    except (TashiError, OSError) as exc:
        print(f"tashi-cm: cannot start: {exc}", file=sys.stderr)
        return 1
    service = build_service(settings, store, nodes=HttpNodeGateway)
    try:
        if args.check:
            print(f"tashi-cm: configuration and database are fine ({settings.sql.uri or 'SQLite'})")
            return 0
        asyncio.run(serve(settings, service))
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
