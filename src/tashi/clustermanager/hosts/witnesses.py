"""The cluster manager's side of witnessed leases (ADR 0010): choosing each host's witnesses,
and asking them before a silent host's VMs are started elsewhere.

``WitnessDesk.assign`` runs inside the transaction of every registration and heartbeat: it
takes the host's acknowledgement of the set it uses, chooses the current set again from the up
hosts (``domain.witnesses.choose``; only hosts whose node manager gave a peer secret can
vouch), saves the sets when they change, and renders the set for the reply, with a token per
witness (``nodeapi.peering``).

``WitnessDesk.confirm`` is asked by ``ha.py`` for a host that is down and whose lease from the
cluster manager has run out: it asks every witness the host may be using how long ago it last
granted it anything. Only if each answers, and each has granted nothing for a whole lease plus
the margin (and has been up that long, when it granted nothing since it started), has the host
surely stopped its VMs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.domain.errors import NotFound, TashiError
from tashi.domain.ids import HostId
from tashi.domain.models import Host, NodeLink
from tashi.domain.nodes import Grant, Witness, WitnessSet
from tashi.domain.witnesses import following
from tashi.nodeapi import peering
from tashi.storage.contract import Transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the witnesses of a silent host said: ``confirmed`` when all agree it is silent;
    else ``waiting_for`` names those that did not (yet)."""

    confirmed: bool
    waiting_for: str = ""


class WitnessDesk:
    def __init__(self, nodes: NodeGateway, count: int, lease: float, margin: float) -> None:
        self._nodes = nodes
        self._count = count
        self._silence = lease + margin  # how long a witness must have granted nothing

    def assign(
        self,
        tx: Transaction,
        host_id: HostId,
        ring: Sequence[HostId],
        acknowledged: int | None,
    ) -> tuple[WitnessSet, tuple[HostId, ...], bool] | None:
        """The host's witness set for its reply, after taking its acknowledgement and choosing
        again from ``ring`` (the up hosts' ids, sorted), with the hosts of the ring it looked
        at to choose and whether it looked at all of them, short of witnesses (the same ring
        prefix, and no host more if it ran out, chooses the same set); ``None`` if the host
        has no link (it did not register)."""
        link = tx.hosts.link(host_id)
        if link is None:
            return None
        sets = link.witnesses.acknowledge(acknowledged)
        chosen: list[Witness] = []
        examined: list[HostId] = []
        for candidate in following(host_id, ring):
            if len(chosen) == self._count:
                break
            examined.append(candidate)
            other = tx.hosts.link(candidate)
            if other is not None and other.peer_secret:
                token = peering.token(other.peer_secret, host_id)
                chosen.append(Witness(host_id=candidate, endpoint=other.endpoint, token=token))
        sets = sets.with_current([w.host_id for w in chosen])
        if sets != link.witnesses:
            tx.hosts.set_witnesses(host_id, sets)
        short = len(chosen) < self._count
        return WitnessSet(epoch=sets.epoch, hosts=tuple(chosen)), tuple(examined), short

    async def confirm(
        self, host: Host, link: NodeLink | None, witnesses: list[Host | HostId]
    ) -> Verdict:
        """Ask every witness ``host`` may be using (``voters_of``) whether it has been silent
        long enough."""
        if link is None:
            return Verdict(False, "no node link")
        sets = link.witnesses
        if sets.lease_free():
            return Verdict(False, "no witness (it may run without a lease)")
        answers = await asyncio.gather(*(self._ask(w, host) for w in witnesses))
        waiting = [text for text in answers if text]
        return Verdict(not waiting, ", ".join(waiting))

    async def _ask(self, witness: Host | HostId, host: Host) -> str:
        """'' if ``witness`` confirms the silence of ``host``, else why not."""
        if not isinstance(witness, Host):
            return f"host {witness} (unknown)"
        try:
            out = await self._nodes.grant(witness, host.id)
        except TashiError as exc:
            return f"{witness.name} ({exc.message})"
        return "" if self._silent_enough(out) else f"{witness.name} ({_describe(out)})"

    def _silent_enough(self, out: Grant) -> bool:
        if out.last_grant_age is not None:
            return out.last_grant_age >= self._silence
        return out.uptime >= self._silence


def voters_of(tx: Transaction, host_id: HostId) -> tuple[NodeLink | None, list[Host | HostId]]:
    """The host's link and every host it may hold a grant from (``HostId`` when unknown)."""
    link = tx.hosts.link(host_id)
    if link is None:
        return None, []
    found: list[Host | HostId] = []
    for voter in sorted(link.witnesses.voters()):
        try:
            found.append(tx.hosts.get(voter))
        except NotFound:
            found.append(voter)
    return link, found


def _describe(out: Grant) -> str:
    if out.last_grant_age is None:
        return f"granted nothing, but up only {out.uptime:.0f} s"
    return f"granted it {out.last_grant_age:.1f} s ago"
