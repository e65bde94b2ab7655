"""Hosts vouching for each other (ADR 0010): the tokens and the client of a witness.

Each node manager keeps a *peer secret* (kept in its state directory, handed to the cluster
manager at registration). The cluster manager gives a host, for each of its witnesses, the token
``token(witness's peer secret, host id)``: it proves to that witness, and to no other host, that
the bearer is that host, so a host can only ever ask for grants in its own name. Neither side
needs to reach the cluster manager to check it.
"""

from __future__ import annotations

import hashlib
import hmac

from tashi.nodeapi import paths, timeouts
from tashi.nodeapi.schemas import PeerLeaseIn, PeerLeaseOut
from tashi.nodeapi.transport import Transport


def token(peer_secret: str, host_id: int) -> str:
    """The token host ``host_id`` presents to the witness whose peer secret this is."""
    message = f"tashi-witness:{int(host_id)}".encode()
    return hmac.new(peer_secret.encode(), message, hashlib.sha256).hexdigest()


def valid(peer_secret: str, host_id: int, presented: str) -> bool:
    return hmac.compare_digest(token(peer_secret, host_id), presented)


class WitnessClient:
    """One host's client of one of its witnesses."""

    def __init__(self, endpoint: str, bearer: str, *, witness_id: int) -> None:
        self.endpoint = endpoint
        self.bearer = bearer
        self._t = Transport(endpoint, peer=f"witness host {witness_id}", token=bearer)

    async def renew(self, host_id: int) -> bool:
        """Ask for a grant; whether it was granted. Raises ``Unavailable`` if unreachable."""
        body = PeerLeaseIn(hostId=host_id)
        reply = await self._t.call(
            "POST", paths.PEER_LEASE, PeerLeaseOut, body=body, timeout=timeouts.WITNESS
        )
        return reply.granted

    async def close(self) -> None:
        await self._t.close()
