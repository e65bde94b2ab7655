"""Hosts vouching for each other (ADR 0010): both sides, as a node manager plays them.

* ``Renewer``: this host asks each of its witnesses for a grant every heartbeat period, all at
  once and each with a short timeout, so a dead witness never delays the others, and a grant
  from any one keeps the lease (``lease.HostLease``).
* ``WitnessBook``: this host as a witness of others. It grants every request that carries a
  valid token (``nodeapi.peering``) and remembers when it last did, per host, on its monotonic
  clock; the cluster manager asks it (``Grant``) before it restarts a silent host's VMs.
  Nothing is persisted: a witness that restarts says how long it has been up, and the cluster
  manager does not count on its word until that is longer than a lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tashi.domain.errors import NotAuthenticated, TashiError
from tashi.domain.ids import HostId
from tashi.domain.nodes import Grant, Witness
from tashi.nodeapi import peering
from tashi.nodemanager.lease import HostLease, witness_key

log = logging.getLogger(__name__)

_PEER_SECRET = "peer-secret"


def peer_secret(state_dir: Path) -> str:
    """This node's peer secret, made once and kept (mode 0600) so that the tokens its
    witnessed hosts hold stay valid across restarts, even while the cluster manager is away."""
    path = state_dir / _PEER_SECRET
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)
    tmp = path.with_name(_PEER_SECRET + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.replace(tmp, path)
    return secret


class WitnessBook:
    def __init__(self, secret: str, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._secret = secret
        self._monotonic = monotonic
        self._started = monotonic()
        self._granted: dict[int, float] = {}  # host id -> when its latest request arrived

    def grant(self, host_id: int, bearer: str) -> bool:
        if not peering.valid(self._secret, host_id, bearer):
            raise NotAuthenticated("this token does not name that host")
        self._granted[host_id] = self._monotonic()
        return True

    def report(self, host_id: HostId) -> Grant:
        now = self._monotonic()
        last = self._granted.get(host_id)
        return Grant(
            host_id=host_id,
            last_grant_age=None if last is None else round(now - last, 3),
            uptime=round(now - self._started, 3),
        )


class WitnessPort(Protocol):
    """What the renewer needs of a witness client (``peering.WitnessClient``)."""

    endpoint: str
    bearer: str

    async def renew(self, host_id: int) -> bool: ...

    async def close(self) -> None: ...


def _http_client(witness: Witness) -> WitnessPort:
    return peering.WitnessClient(witness.endpoint, witness.token, witness_id=witness.host_id)


class Renewer:
    def __init__(
        self,
        lease: HostLease,
        monotonic: Callable[[], float] = time.monotonic,
        connect: Callable[[Witness], WitnessPort] = _http_client,
    ) -> None:
        self._lease = lease
        self._monotonic = monotonic
        self._connect = connect
        self._clients: dict[int, WitnessPort] = {}
        self._failing: set[int] = set()  # witnesses whose last request failed (logged once)

    async def renew(self) -> int:
        """Ask every witness once; how many granted."""
        witnesses = self._lease.witnesses
        host_id = self._lease.host_id
        if witnesses is None or host_id is None or self._lease.length <= 0:
            return 0
        await self._retire(witnesses.hosts)
        results = await asyncio.gather(*(self._ask(w, host_id) for w in witnesses.hosts))
        return sum(results)

    async def _ask(self, witness: Witness, host_id: int) -> bool:
        client = await self._client(witness)
        sent = self._monotonic()
        try:
            granted = await client.renew(host_id)
        except TashiError as exc:
            if witness.host_id not in self._failing:
                self._failing.add(witness.host_id)
                log.warning("witness host %d did not grant: %s", witness.host_id, exc.message)
            return False
        if witness.host_id in self._failing:
            self._failing.discard(witness.host_id)
            log.info("witness host %d grants again", witness.host_id)
        if granted:
            self._lease.grant(witness_key(witness.host_id), sent)
        return granted

    async def _client(self, witness: Witness) -> WitnessPort:
        known = self._clients.get(witness.host_id)
        if known is not None and (known.endpoint, known.bearer) == (
            witness.endpoint,
            witness.token,
        ):
            return known
        if known is not None:
            await known.close()
        client = self._connect(witness)
        self._clients[witness.host_id] = client
        return client

    async def _retire(self, current: tuple[Witness, ...]) -> None:
        keep = {w.host_id for w in current}
        for host_id in [h for h in self._clients if h not in keep]:
            await self._clients.pop(host_id).close()
            self._failing.discard(host_id)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
