"""``tashi-nm``: the node manager daemon, one per host.

Re-attaches to the VMs it left running, serves the node API, registers its host with the
cluster manager (creating it there if new), then sends heartbeats and VM events until
SIGINT/SIGTERM. Stopping the node manager never stops its VMs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import uvicorn

import tashi
from tashi.config import ConfigError, load_settings
from tashi.config.settings import Settings
from tashi.domain import instancetypes
from tashi.domain.clock import SystemClock
from tashi.domain.errors import InvalidInput, TashiError
from tashi.images.store import ImageStore
from tashi.network.base import NetworkDriver
from tashi.network.registry import create_driver as create_network
from tashi.nodeapi.cmclient import ClusterManagerClient
from tashi.nodemanager import watchdog
from tashi.nodemanager.disks import DiskManager
from tashi.nodemanager.fencing import FenceMarks
from tashi.nodemanager.lease import HostLease
from tashi.nodemanager.metadata.answers import Answers
from tashi.nodemanager.metadata.guests import Site
from tashi.nodemanager.metadata.nocloud import Seeds
from tashi.nodemanager.metadata.plumbing import KernelPlumbing
from tashi.nodemanager.metadata.service import MetadataService
from tashi.nodemanager.metadata.tokens import Tokens, load_key
from tashi.nodemanager.outbox import Outbox
from tashi.nodemanager.reporting import Identity, Reporter
from tashi.nodemanager.routes import create_app
from tashi.nodemanager.secgroups.plumbing import KernelPlumbing as FirewallPlumbing
from tashi.nodemanager.secgroups.service import FirewallService
from tashi.nodemanager.service import NodeService
from tashi.nodemanager.vmdirs import VmDirs
from tashi.nodemanager.witnessing import Renewer, WitnessBook, peer_secret
from tashi.runtime import logcap, logs
from tashi.runtime.tasks import Supervisor
from tashi.vmm.base import VmEvent, VmmDriver, VmState
from tashi.vmm.registry import create_driver as create_vmm
from tashi.web.limits import HttpLimits
from tashi.web.server import server_config

log = logging.getLogger("tashi.nm")

LEASE_CHECK_INTERVAL = 0.5  # how often an expired HA lease is looked for (ADR 0010)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tashi-nm",
        description="The Tashi node manager: runs the VMs of this host for the cluster manager.",
        epilog="Configuration: TashiDefaults.cfg, Tashi.cfg, NodeManagerDefaults.cfg and"
        " NodeManager.cfg in ./etc/, /usr/share/tashi/, /etc/tashi/ and ~/.tashi/, then"
        " TASHI_CONFIG. Credentials: [AccessClusterManager] username/password of a user of"
        " role node.",
    )
    parser.add_argument("--version", action="version", version=f"tashi-nm {tashi.__version__}")
    return parser


def identity(settings: Settings, secret: str, peer: str | None = None) -> Identity:
    svc = settings.node_manager_service
    name = svc.name or socket.gethostname()
    endpoint = svc.advertise or f"http://{name}:{svc.port}"
    return Identity(
        name=name, endpoint=endpoint, secret=secret, version=tashi.__version__, peer_secret=peer
    )


async def pump_events(driver: VmmDriver, node: NodeService) -> None:
    events: AsyncIterator[VmEvent] = driver.events()
    async for event in events:
        if event.state is VmState.exited:
            reason = event.reason.value if event.reason is not None else "unknown"
            await node.on_exit(event.instance_id, f"{reason}: {event.detail}".rstrip(": "))


async def host_capacity(settings: Settings, driver: VmmDriver) -> tuple[int, int]:
    """``(memory MB, cores)`` the host offers: ``[NodeManager] memory``/``cores`` where set
    (a virtual host of tashi-cluster advertises its share, not the machine), else what the
    driver measures."""
    nm = settings.node_manager
    memory, cores = (0, 0)
    if not (nm.memory and nm.cores):
        memory, cores = await driver.host_info()
    return nm.memory or memory, nm.cores or cores


def metadata_service(settings: Settings, network: NetworkDriver) -> MetadataService:
    """The guests' instance metadata: served on the taps of a driver that makes them (not the
    fake's), with tokens signed by a key kept in the state directory; NoCloud disks on demand."""
    nm = settings.node_manager
    if nm.metadata_tokens not in ("optional", "required"):
        raise InvalidInput(
            f"[NodeManager] metadataTokens = {nm.metadata_tokens!r}: optional or required"
        )
    tokens = Tokens(load_key(settings.node_manager_service.state_dir), time.time)
    answers = Answers(tokens, tokens_required=nm.metadata_tokens == "required")
    types = instancetypes.table(settings.instance_types.entries)
    site = Site(
        region=settings.ec2.region,
        zone=settings.ec2.zones.split(",")[0].strip(),
        types={name: (t.cores, t.memory) for name, t in types.items()},
    )
    plumbing = KernelPlumbing() if nm.metadata and network.name != "fake" else None
    return MetadataService(
        plumbing, answers, site, SystemClock().now, seeds=Seeds(default=nm.nocloud)
    )


async def run(settings: Settings) -> None:
    svc = settings.node_manager_service
    access = settings.access_cluster_manager
    if not access.username or not access.password:
        raise TashiError(
            "no credentials for the cluster manager: set [AccessClusterManager] username and"
            " password (a user of role node) in NodeManager.cfg"
        )
    secret = secrets.token_urlsafe(32)
    state_dir = svc.state_dir
    node_lock = watchdog.hold_node_lock(state_dir)
    if node_lock is None:
        raise TashiError(f"another tashi-nm runs with the state directory {state_dir}")
    peer = peer_secret(state_dir)
    me = identity(settings, secret, peer)
    lease, marks = HostLease(state_dir), FenceMarks(state_dir)
    guard = watchdog.Keeper(state_dir)
    guard.ensure()  # before any VM is re-attached: it outlives this process
    driver = create_vmm(settings)
    network = create_network(settings)
    store = ImageStore(settings.vfs.prefix)
    client = ClusterManagerClient(
        f"http://{svc.cluster_manager_host}:{svc.cluster_manager_port}",
        username=access.username,
        password=access.password,
    )
    outbox = Outbox(state_dir)  # the node's events, sent by the reporter
    metadata = metadata_service(settings, network)
    # security groups on the taps of a driver that makes them (the fake's are in no kernel)
    firewall = FirewallService(
        FirewallPlumbing() if network.name != "fake" else None, svc.state_dir
    )
    node = NodeService(
        driver=driver,
        network=network,
        disks=DiskManager(store, settings.node_manager.scratch_dir),
        dirs=VmDirs(svc.state_dir / "vms"),
        suspend_dir=settings.vfs.prefix / "suspend",
        images_dir=store.images_dir,
        events=outbox,
        now=SystemClock().now,
        advertise_host=_host_of(me.endpoint),
        shutdown_grace=settings.qemu.shutdown_grace,
        fenced=marks,
        metadata=metadata,
        firewall=firewall,
    )
    memory, cores = await host_capacity(settings, driver)
    reporter = Reporter(
        client,
        node,
        me,
        lambda: (memory, cores),
        lease=lease,
        marks=marks,
        outbox=outbox,
        network=network,
        firewall=firewall,
    )
    renewer = Renewer(lease)
    await driver.open()
    await metadata.start()  # before recover, which hands it the VMs that kept running
    await firewall.start()  # the same, and with the last policy the cluster manager sent
    recovered = await node.recover()
    log.info("re-attached to %d running VM(s)", len(recovered))
    limits = HttpLimits.of(svc)
    app = create_app(node, secret, WitnessBook(peer), limits=limits)
    server = uvicorn.Server(server_config(app, host=svc.host, port=svc.port, limits=limits))
    supervisor = Supervisor()
    # a heartbeat keeps its pace through an outage: a returned cluster manager hears from
    # every host within one period (issue 26), and a failed one costs no more than a beat
    beat = svc.register_frequency
    supervisor.every("heartbeat", beat, reporter.heartbeat, max_backoff=beat)
    supervisor.every("lease", LEASE_CHECK_INTERVAL, lambda: _lease_pass(reporter, guard))
    supervisor.every("witnesses", beat, renewer.renew, max_backoff=beat)
    supervisor.every("vm-events", 1.0, lambda: pump_events(driver, node))
    supervisor.every("send-events", 1.0, lambda: reporter.send_events_forever(2.0))
    logs_kept = logcap.LogCap([state_dir], settings.logging.max_log_size)  # VMs', watchdog's
    supervisor.every("cap-logs", logcap.INTERVAL, logs_kept.check)
    log.info("tashi-nm %s for host %s serving on %s", tashi.__version__, me.name, me.endpoint)
    try:
        await server.serve()
    finally:
        await supervisor.stop()
        await node.close()
        await metadata.close()
        await firewall.close()
        await driver.close()
        await network.close()
        await renewer.close()
        await client.close()
        node_lock.close()


async def _lease_pass(reporter: Reporter, guard: watchdog.Keeper) -> None:
    await reporter.fence_if_expired()
    guard.ensure()


def _host_of(endpoint: str) -> str:
    return urlsplit(endpoint).hostname or "localhost"


def main(argv: list[str] | None = None) -> int:
    _parser().parse_args(argv)
    try:
        settings = load_settings("NodeManager")
    except ConfigError as exc:
        print(f"tashi-nm: configuration error: {exc.message}", file=sys.stderr)
        return 2
    logs.setup(settings.logging.level, as_json=settings.logging.json, program="tashi-nm")
    os.umask(0o077)
    try:
        settings.node_manager_service.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        return 0
    except (TashiError, OSError) as exc:
        print(f"tashi-nm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
