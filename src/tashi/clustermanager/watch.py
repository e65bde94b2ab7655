"""A change feed for agents: a version number bumped by every write that may change placement.

The scheduler long-polls ``GET /v1/instances/changes?after=N&timeout=25`` instead of listing the
cluster every few seconds: the call answers as soon as the version differs from ``N`` (or when
the timeout passes), and the agent then reads what it needs. The version counts writes that
touched instances, and host writes that change what a scheduler sees (up, state, capacity,
reservations); heartbeats that only refresh a host's clock and load do not count, so an idle
cluster wakes nobody.

The version lives in memory: a restarted cluster manager starts again at 0, and an agent whose
``after`` is not the current version (higher after a restart) is answered at once, which makes
it read everything again. A cluster manager that stops closes its feed (``close``, from
``tashi.web.stop.Server``): every long-poll is answered at once with the version it had, as if
its timeout had passed, so the stop waits for none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any

from tashi.clustermanager.events import HostDown, HostUp, InstanceStateChanged
from tashi.domain.states import InstanceState
from tashi.storage.contract import Transaction

# Repository methods that change instances or what a scheduler sees of hosts.
_INSTANCE_WRITES = frozenset({"add", "adopt", "transition", "remove", "add_nic", "remove_nic"})
_HOST_WRITES = frozenset({"add", "remove", "set_state", "add_reservation", "remove_reservation"})
# Host writes keyed by the host's id, besides ``update`` (``renew`` is liveness only).
_HOST_KEYED = frozenset(
    {"set_state", "add_reservation", "remove_reservation", "remove", "set_link", "set_witnesses"}
)
# Host fields whose change matters to placement (``update``'s keyword arguments).
_HOST_FIELDS = ("up", "memory", "cores", "cpu_speed")
# ... and those that change what node managers are told of each other (``underlay.py``).
_PEER_FIELDS = ("up", "config")


class ChangeFeed:
    """The version counter and its waiters. Used from the event loop only."""

    def __init__(self) -> None:
        self.version = 0
        #: bumped by host writes that change the hosts' peers (up, configuration elements)
        self.hosts_version = 0
        self._changed: asyncio.Event | None = None
        self._closed = False
        self._touch_listeners: list[Callable[[set[int], set[int], int | None], None]] = []

    def bump_hosts(self) -> None:
        self.hosts_version += 1

    def on_touch(self, listener: Callable[[set[int], set[int], int | None], None]) -> None:
        """Call ``listener(hosts, instances, reporting)`` after each committed write with what
        it wrote (``Watched.touched_hosts``, ``touched_instances``) and the host whose own
        report it recorded, if any (``Database.write``)."""
        self._touch_listeners.append(listener)

    def touch(self, hosts: set[int], instances: set[int], reporting: int | None) -> None:
        for listener in self._touch_listeners:
            listener(hosts, instances, reporting)

    def bump(self) -> None:
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def close(self) -> None:
        """Answer every waiter now, and every later one at once (the cluster manager stops)."""
        self._closed = True
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait(self, after: int, timeout: float) -> int:
        """The current version as soon as it differs from ``after``, or after ``timeout``,
        or once the feed is closed."""
        if self.version != after or timeout <= 0 or self._closed:
            return self.version
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)
        return self.version


class Watched:
    """A write transaction that notes whether it touched instances (or hosts, as above), and
    the events it recorded (``clustermanager.events``: instance state changes, hosts going up
    or down) that someone listens to (``wants``).

    Wraps the store's transaction; ``changed`` and ``recorded`` are read after the commit."""

    def __init__(self, tx: Transaction, wants: Callable[[type[Any]], bool] | None = None) -> None:
        self._tx = tx
        self._wants = wants or (lambda kind: False)
        self.changed = False
        self.hosts_changed = False
        self.recorded: list[object] = []
        #: the hosts it wrote, or whose instances it wrote (as far as the result says), and
        #: the instances it wrote (``hosts.book.HostBook``: whose next report goes the whole way)
        self.touched_hosts: set[int] = set()
        self.touched_instances: set[int] = set()

    def wants(self, kind: type[Any]) -> bool:
        return self._wants(kind)

    @property
    def instances(self) -> Any:
        return _Instances(self, self._tx.instances, _INSTANCE_WRITES)

    @property
    def hosts(self) -> Any:
        return _Hosts(self, self._tx.hosts, _HOST_WRITES)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


class _Repository:
    def __init__(self, owner: Watched, inner: Any, writes: frozenset[str]) -> None:
        self._owner = owner
        self._inner = inner
        self._writes = writes

    def __getattr__(self, name: str) -> Any:
        if name in self._writes:
            self._owner.changed = True
        return getattr(self._inner, name)


class _Instances(_Repository):
    """Notes every state change of an instance (``InstanceStateChanged``), and the instances
    written and the hosts they are on."""

    def _touch(self, instance_id: Any, current: Any = None) -> None:
        self._owner.touched_instances.add(instance_id)
        if current is not None and current.host_id is not None:
            self._owner.touched_hosts.add(current.host_id)

    def _note(self, previous: InstanceState | None, current: Any, removed: Any = None) -> None:
        if not self._owner.wants(InstanceStateChanged):
            return
        if removed is not None:
            event = InstanceStateChanged(removed, previous, InstanceState.Exited, None)
        elif previous is current.state:
            return
        else:
            event = InstanceStateChanged(current.id, previous, current.state, current)
        self._owner.recorded.append(event)

    def add(self, *args: Any, **kwargs: Any) -> Any:
        self._owner.changed = True
        added = self._inner.add(*args, **kwargs)
        self._touch(added.id, added)
        self._note(None, added)
        return added

    def adopt(self, *args: Any, **kwargs: Any) -> Any:
        self._owner.changed = True
        adopted = self._inner.adopt(*args, **kwargs)
        self._touch(adopted.id, adopted)
        self._note(None, adopted)
        return adopted

    def transition(self, instance_id: Any, expected: InstanceState, *args: Any, **kw: Any) -> Any:
        self._owner.changed = True
        moved = self._inner.transition(instance_id, expected, *args, **kw)
        self._touch(instance_id, moved)
        self._note(expected, moved)
        return moved

    def remove(self, instance_id: Any, expected: InstanceState) -> None:
        self._owner.changed = True
        self._inner.remove(instance_id, expected)
        self._touch(instance_id)
        self._note(expected, None, removed=instance_id)

    # A NIC added or removed (``instances/nics.py``) is a change the scheduler's hooks act on
    # (the DhcpDns hook gives it an address and a lease): bump, as a state change would.
    def add_nic(self, instance_id: Any, *args: Any, **kw: Any) -> Any:
        return self._nics(self._inner.add_nic, instance_id, *args, **kw)

    def remove_nic(self, instance_id: Any, *args: Any, **kw: Any) -> Any:
        return self._nics(self._inner.remove_nic, instance_id, *args, **kw)

    def _nics(self, write: Any, instance_id: Any, *args: Any, **kw: Any) -> Any:
        self._owner.changed = True
        changed = write(instance_id, *args, **kw)
        self._touch(instance_id, changed)
        return changed


class _Hosts(_Repository):
    def __getattr__(self, name: str) -> Any:
        if name in self._writes:
            self._owner.hosts_changed = True
        found = super().__getattr__(name)
        return functools.partial(self._keyed, found) if name in _HOST_KEYED else found

    def _keyed(self, method: Callable[..., Any], host_id: Any, *args: Any, **kw: Any) -> Any:
        result = method(host_id, *args, **kw)
        self._owner.touched_hosts.add(host_id)
        return result

    def update(self, host_id: Any, **fields: Any) -> Any:
        owner = self._owner
        given = {f for f in (*_HOST_FIELDS, *_PEER_FIELDS) if fields.get(f) is not None}
        told = fields.get("up") is not None and (owner.wants(HostUp) or owner.wants(HostDown))
        before = None
        if told or (given and not (owner.changed and owner.hosts_changed)):
            before = self._inner.get(host_id)
            moved = {f for f in given if fields[f] != getattr(before, f)}
            owner.changed |= bool(moved & set(_HOST_FIELDS))
            owner.hosts_changed |= bool(moved & set(_PEER_FIELDS))
        updated = self._inner.update(host_id, **fields)
        owner.touched_hosts.add(host_id)
        if told and before is not None and before.up != updated.up:
            kind = HostUp if updated.up else HostDown
            if owner.wants(kind):
                owner.recorded.append(kind(updated))
        return updated
