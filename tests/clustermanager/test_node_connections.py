"""Nothing the cluster manager keeps grows with the hosts it has called (issue 25): its client
of a node manager is closed by the gateway's sweep once no call has used it for ``IDLE``
seconds, with the connection it held. Real node-manager apps (over the fake VMM) on loopback
ports are called by ``HttpNodeGateway`` over a SQLite store; the test counts this process's open
sockets: up while the clients are kept, back where they were after the sweep, and a host called
again is reached again."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts import gateway
from tashi.clustermanager.hosts.gateway import HttpNodeGateway
from tashi.domain.models import Host, Role
from tashi.nodemanager.routes import create_app
from tashi.nodemanager.witnessing import WitnessBook
from tashi.runtime.ports import free_port
from tashi.storage.sql import SqlStore, make_engine, upgrade
from tashi.web.limits import HttpLimits
from tashi.web.stop import Server
from tests.nodemanager.test_service import make

pytestmark = pytest.mark.anyio
HOSTS = 12
SECRET = "s" * 40
LIMITS = HttpLimits(max_body=1 << 20, head_timeout=10, body_timeout=30, max_connections=10)
NOW = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def open_files() -> int:
    """This process's open sockets (the database's files come and go with its threads)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def back_to(count: int) -> None:
    """Until this process has no more open sockets than ``count`` (the node managers' servers,
    in this process too, close their end of a connection once they see ours closed)."""
    async with asyncio.timeout(5):
        while open_files() > count:
            await asyncio.sleep(0.01)  # polling the condition just above


@asynccontextmanager
async def node_manager(tmp_path: Path) -> AsyncIterator[int]:
    """A node manager's app over the fake drivers, served on a free loopback port."""
    node, _, _, _ = make(tmp_path, poweroff_delay=0.0, grace=3600.0)
    port = free_port()
    app = create_app(node, SECRET, WitnessBook("p" * 40))
    server = Server(app, what="a node manager", host="127.0.0.1", port=port, limits=LIMITS)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)  # polling the condition just above
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await node.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_idle_clients_of_node_managers_are_closed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tashi.sqlite'}"
    upgrade(url)
    db = Database(SqlStore(make_engine(url)), workers=2)
    clock = Clock()
    nodes = HttpNodeGateway(db, clock=clock)
    async with AsyncExitStack() as stack:
        ports = [
            await stack.enter_async_context(node_manager(tmp_path / f"n{n}")) for n in range(HOSTS)
        ]
        hosts = await db.write(lambda tx: links(tx, ports))
        before = open_files()

        assert all(await asyncio.gather(*(nodes.alive(h) for h in hosts)))
        assert nodes.open_clients == HOSTS
        kept = open_files()
        assert kept >= before + HOSTS  # a connection each, kept alive

        clock.now = gateway.IDLE - 1
        await nodes.sweep()
        assert nodes.open_clients == HOSTS  # not idle long enough yet
        clock.now = gateway.IDLE
        await nodes.sweep()
        assert nodes.open_clients == 0
        await back_to(before)

        assert await nodes.alive(hosts[0])  # reached again
        assert nodes.open_clients == 1
        await nodes.close()
        await back_to(before)
    db.close()


def links(tx: object, ports: list[int]) -> list[Host]:
    user = tx.users.add(  # type: ignore[attr-defined]
        "node", role=Role.node, priority=0, password_hash="x", now=NOW
    )
    hosts = []
    for n, port in enumerate(ports):
        host = tx.hosts.add(f"h{n}", memory=1024, cores=2, version="t", now=NOW)  # type: ignore[attr-defined]
        tx.hosts.set_link(  # type: ignore[attr-defined]
            host.id, endpoint=f"http://127.0.0.1:{port}", secret=SECRET, user_id=user.id, now=NOW
        )
        hosts.append(host)
    return hosts
