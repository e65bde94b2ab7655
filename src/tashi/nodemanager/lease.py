"""This host's HA lease as its node manager holds it (ADR 0010).

The host may run its VMs while it holds a fresh grant from any one of its voters: the cluster
manager (each reply to a registration or heartbeat) or one of its witness hosts (each answer to
``witnessing.Renewer``). A grant lasts ``length`` seconds counted from just *before* the request
was sent, so the host's deadline is never later than the voter's own record of it.

Once the deadline has passed, the host must stop its VMs (``Reporter.fence_if_expired``, and the
watchdog if the node manager is gone) before it may go on: a grant that arrives after the
deadline still marks the lease *lapsed* until the fence has run, because the cluster manager may
have decided, between the two, to start the VMs elsewhere.

What must outlive the process is kept in the state directory: ``lease.json`` (the host's id,
the lease length and the witness set, so that a node manager restarted while the cluster
manager is away can still ask its witnesses) and ``fencing``'s deadline file (which the watchdog
reads, and from which a restarted node manager takes the deadline its predecessor held).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from tashi.domain.ids import HostId
from tashi.domain.nodes import WitnessSet
from tashi.nodeapi import convert
from tashi.nodemanager import fencing

log = logging.getLogger(__name__)

CM = "cm"  # the cluster manager's key among the voters
_CARRIED = "carried"  # the deadline a previous node manager process held
_FILE = "lease.json"


def witness_key(host_id: int) -> str:
    return f"host:{host_id}"


class HostLease:
    def __init__(self, state_dir: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._dir = state_dir
        self._monotonic = monotonic
        self.host_id: HostId | None = None
        self.length = 0.0  # seconds a grant lasts; 0: HA is off, nothing ever runs out
        self.witnesses: WitnessSet | None = None  # None: the cluster manager never said
        self._grants: dict[str, float] = {}  # voter -> when its latest granted request left
        self._lapsed = False  # the deadline passed; the VMs must be stopped before going on
        self._published: str | None = None
        self._load()

    # --- persistence ----------------------------------------------------------------------

    def _load(self) -> None:
        try:
            doc = json.loads((self._dir / _FILE).read_text())
            self.host_id = HostId(doc["hostId"]) if doc.get("hostId") is not None else None
            self.length = float(doc.get("length", 0.0))
            if doc.get("witnesses") is not None:
                self.witnesses = convert.witness_set_from_doc(doc["witnesses"])
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError) as exc:
            log.error("ignoring unreadable %s: %s", self._dir / _FILE, exc)
            return
        carried = fencing.read_deadline(self._dir)
        if carried is not None and self.length > 0:
            self._grants[_CARRIED] = carried - self.length

    def _save(self) -> None:
        doc = {
            "hostId": self.host_id,
            "length": self.length,
            "witnesses": convert.witness_set_doc(self.witnesses)
            if self.witnesses is not None
            else None,
        }
        tmp = self._dir / (_FILE + ".new")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self._dir / _FILE)

    # --- what the cluster manager says ----------------------------------------------------

    def learn(self, host_id: HostId, length: float, witnesses: WitnessSet | None) -> None:
        """Take the host id, lease length and witness set of a reply. Grants of hosts that are
        no longer witnesses are dropped at once: the cluster manager stops asking them once
        this set is acknowledged."""
        known = self.witnesses
        new = witnesses
        if (host_id, length, new) == (self.host_id, self.length, known):
            return
        self.host_id, self.length, self.witnesses = host_id, length, new
        kept = {CM, _CARRIED} | {witness_key(w.host_id) for w in (new.hosts if new else ())}
        self._grants = {k: v for k, v in self._grants.items() if k in kept}
        self._save()
        self.publish()
        if new is not None and (known is None or known.epoch != new.epoch):
            log.info(
                "witnesses (epoch %d): %s",
                new.epoch,
                ", ".join(f"host {w.host_id}" for w in new.hosts) or "none",
            )

    # --- grants and the deadline ----------------------------------------------------------

    def grant(self, voter: str, sent: float) -> None:
        """A voter granted the request sent at ``sent`` (monotonic)."""
        if self.length <= 0:
            return
        if self.expired():
            self._lapsed = True
        self._grants[voter] = max(sent, self._grants.get(voter, sent))
        self.publish()

    def deadline(self) -> float | None:
        """When the VMs must stop unless a grant comes; ``None``: never (HA off, no lease
        granted yet, or a host alone with no witness: ``WitnessSets.lease_free``)."""
        if self.length <= 0 or not self._grants:
            return None
        if self.witnesses is not None and not self.witnesses.hosts:
            return None
        return max(self._grants.values()) + self.length

    def expired(self) -> bool:
        deadline = self.deadline()
        return deadline is not None and self._monotonic() > deadline

    def must_fence(self) -> bool:
        return self._lapsed or self.expired()

    def fenced(self) -> None:
        """The VMs found when the lease had run out were stopped."""
        self._lapsed = False
        self.publish()

    def publish(self) -> None:
        """Tell the watchdog the deadline (after every change of it: a grant, a new length or
        witness set, a fence), unless a lapse still waits for its fence (the watchdog must then
        keep the passed one)."""
        if self._lapsed:
            return
        deadline = self.deadline()
        text = "none" if deadline is None else f"{deadline:.3f}"
        if text != self._published:
            fencing.write_deadline(self._dir, deadline)
            self._published = text
