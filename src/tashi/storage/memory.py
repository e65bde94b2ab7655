"""An in-memory store for unit tests and large simulations. Never the default.

It keeps the whole contract of ``contract.py`` (including compare-and-swap and uniqueness) with
one lock: a transaction works on a copy of the tables and swaps it in when the block ends
without an exception, so a failed block leaves nothing behind.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from tashi.domain.errors import (
    AlreadyExists,
    InvalidState,
    NotFound,
    StateConflict,
)
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import (
    Host,
    Instance,
    InstanceEvent,
    InstanceSpec,
    Network,
    NicConfig,
    NodeLink,
    Usage,
)
from tashi.domain.nodes import Renewal
from tashi.domain.states import HostState, InstanceState
from tashi.domain.witnesses import WitnessSets
from tashi.storage.contract import (
    ENDPOINT_MAX,
    EVENT_KIND_MAX,
    SECRET_MAX,
    InstanceChanges,
    InstanceFilter,
    Store,
)
from tashi.storage.memaccounts import MemoryAccessKeys, MemoryTokens, MemoryUsers
from tashi.storage.memaddresses import MemoryAddresses
from tashi.storage.memkeypairs import MemoryKeyPairs, MemoryTags
from tashi.storage.memsecgroups import MemorySecurityGroups
from tashi.storage.memtables import DICTS, Tables, aware, page
from tashi.storage.memvolumes import MemorySnapshots, MemoryVolumes
from tashi.storage.shared import bounded, check_limit, event_message, last_nic, new_instance

_EVERYTHING = InstanceFilter()


def _matches(inst: Instance, where: InstanceFilter) -> bool:
    return (
        (where.ids is None or inst.id in where.ids)
        and (where.name is None or inst.name == where.name)
        and (where.name_prefix is None or inst.name.startswith(where.name_prefix))
        and (where.user_id is None or inst.user_id == where.user_id)
        and (where.states is None or inst.state in where.states)
        and (where.host_id is None or inst.host_id == where.host_id)
        and (where.group_name is None or inst.group_name == where.group_name)
        and (where.after_id is None or inst.id > where.after_id)
    )


class _Instances:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(
        self, owner: UserId, spec: InstanceSpec, *, unique_name: bool, now: datetime
    ) -> Instance:
        aware(now)
        if owner not in self._t.users:
            raise NotFound(f"user {owner} does not exist")
        if unique_name and spec.name in self._t.unique_names.values():
            raise AlreadyExists(f"an instance named {spec.name!r} exists already")
        for nic in spec.nics:
            if nic.network not in self._t.networks:
                raise NotFound(f"network {nic.network} does not exist")
        macs = [n.mac for n in spec.nics]
        taken = self.macs_in_use(macs) | {m for m in macs if macs.count(m) > 1}
        if taken:
            raise AlreadyExists(f"MAC address {sorted(taken)[0]} in use")
        self._check_ips(spec.nics, None)
        iid = InstanceId(self._t.next_instance)
        self._t.next_instance += 1
        inst = new_instance(iid, owner, spec, now)
        self._t.instances[iid] = inst
        if unique_name:
            self._t.unique_names[iid] = spec.name
        return inst

    def adopt(self, instance: Instance, *, unique_name: bool, now: datetime) -> Instance:
        if instance.id in self._t.instances:
            raise AlreadyExists(f"instance {instance.id} exists already")
        if instance.user_id not in self._t.users:
            raise NotFound(f"user {instance.user_id} does not exist")
        for nic in instance.nics:
            if nic.network not in self._t.networks:
                raise NotFound(f"network {nic.network} does not exist")
        if unique_name and instance.name in self._t.unique_names.values():
            raise AlreadyExists(f"an instance named {instance.name!r} exists already")
        taken = self.macs_in_use([n.mac for n in instance.nics])
        if taken:
            raise AlreadyExists(f"MAC address {sorted(taken)[0]} in use")
        adopted = replace(instance, created_at=now, state_since=now)
        self._t.instances[instance.id] = adopted
        if unique_name:
            self._t.unique_names[instance.id] = instance.name
        self._t.next_instance = max(self._t.next_instance, instance.id + 1)
        return adopted

    def _check_ips(self, nics: Sequence[NicConfig], own: InstanceId | None) -> None:
        used = {
            (n.network, n.ip)
            for i in self._t.instances.values()
            if i.id != own
            for n in i.nics
            if n.ip
        }
        for nic in nics:
            if nic.ip is None:
                continue
            if (nic.network, nic.ip) in used:
                raise AlreadyExists(f"address {nic.ip} is in use on network {nic.network}")
            used.add((nic.network, nic.ip))

    def get(self, instance_id: InstanceId) -> Instance:
        try:
            return self._t.instances[instance_id]
        except KeyError:
            raise NotFound(f"instance {instance_id} does not exist") from None

    def find(self, where: InstanceFilter = _EVERYTHING) -> list[Instance]:
        found = sorted(
            (i for i in self._t.instances.values() if _matches(i, where)), key=lambda i: i.id
        )
        return found[: where.limit] if where.limit is not None else found

    def count(self, where: InstanceFilter = _EVERYTHING) -> int:
        return len(self.find(replace(where, limit=None)))

    def macs_in_use(self, macs: Sequence[str]) -> set[str]:
        wanted = set(macs)
        return {n.mac for i in self._t.instances.values() for n in i.nics if n.mac in wanted}

    def transition(
        self,
        instance_id: InstanceId,
        expected: InstanceState,
        new: InstanceState,
        *,
        now: datetime,
        changes: InstanceChanges | None = None,
    ) -> Instance:
        aware(now)
        inst = self.get(instance_id)
        if inst.state is not expected:
            raise StateConflict(f"instance {instance_id} is {inst.state.name}, not {expected.name}")
        c = changes or InstanceChanges()
        nics = inst.nics
        if c.nics is not None:
            ips = {n.mac: n.ip for n in c.nics}
            nics = tuple(replace(n, ip=ips.get(n.mac, n.ip)) for n in inst.nics)
            self._check_ips(nics, instance_id)
        updated = replace(
            inst,
            state=new,
            state_since=now if new is not inst.state else inst.state_since,
            host_id=None
            if c.clear_host
            else (c.host_id if c.host_id is not None else inst.host_id),
            vm_id=None if c.clear_vm else (c.vm_id if c.vm_id is not None else inst.vm_id),
            reason=None if c.clear_reason else (c.reason if c.reason is not None else inst.reason),
            hints=dict(c.hints) if c.hints is not None else inst.hints,
            cpu_share=c.cpu_share if c.cpu_share is not None else inst.cpu_share,
            cores=c.cores if c.cores is not None else inst.cores,
            memory=c.memory if c.memory is not None else inst.memory,
            nics=nics,
            disks=c.disks if c.disks is not None else inst.disks,
        )
        self._t.instances[instance_id] = updated
        return updated

    def add_nic(
        self, instance_id: InstanceId, expected: InstanceState, nic: NicConfig, *, now: datetime
    ) -> Instance:
        inst = self.transition(instance_id, expected, expected, now=now)
        if nic.network not in self._t.networks:
            raise NotFound(f"network {nic.network} does not exist")
        if self.macs_in_use([nic.mac]):
            raise AlreadyExists(f"MAC address {nic.mac} in use")
        self._check_ips([nic], None)
        updated = replace(inst, nics=(*inst.nics, nic))
        self._t.instances[instance_id] = updated
        return updated

    def remove_nic(
        self, instance_id: InstanceId, expected: InstanceState, mac: str, *, now: datetime
    ) -> Instance:
        inst = self.transition(instance_id, expected, expected, now=now)
        index = last_nic(inst, mac)
        if index is None:
            return inst
        updated = replace(inst, nics=inst.nics[:-1])
        self._t.instances[instance_id] = updated
        self._t.addresses.pop((instance_id, index), None)
        return updated

    def remove(self, instance_id: InstanceId, expected: InstanceState) -> None:
        inst = self.get(instance_id)
        if inst.state is not expected:
            raise StateConflict(f"instance {instance_id} is {inst.state.name}, not {expected.name}")
        del self._t.instances[instance_id]
        self._t.unique_names.pop(instance_id, None)
        MemoryAddresses(self._t).release(instance_id)

    def _on_hosts(self, states: Sequence[InstanceState]) -> list[tuple[HostId, Instance]]:
        """(host, instance) for the instances in ``states`` that have a host, in id order."""
        wanted = set(states)
        return sorted(
            ((i.host_id, i) for i in self._t.instances.values() if i.host_id is not None
             and i.state in wanted),
            key=lambda pair: (pair[0], pair[1].id),
        )  # fmt: skip

    def usage_by_host(
        self, states: Sequence[InstanceState], host_ids: Collection[HostId] | None = None
    ) -> dict[HostId, Usage]:
        usage: dict[HostId, Usage] = {}
        for host_id, inst in self._on_hosts(states):
            if host_ids is not None and host_id not in host_ids:
                continue
            u = usage.get(host_id, Usage())
            usage[host_id] = Usage(u.instances + 1, u.memory + inst.memory, u.cores + inst.cores)
        return usage

    def usage_on_host(self, host_id: HostId, states: Sequence[InstanceState]) -> Usage:
        wanted = set(states)
        placed = [
            i for i in self._t.instances.values() if i.host_id == host_id and i.state in wanted
        ]
        return Usage(len(placed), sum(i.memory for i in placed), sum(i.cores for i in placed))


class _Hosts:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(self, name: str, *, memory: int, cores: int, version: str, now: datetime) -> Host:
        aware(now)
        if any(h.name == name for h in self._t.hosts.values()):
            raise AlreadyExists(f"a host named {name!r} exists already")
        hid = HostId(self._t.next_host)
        self._t.next_host += 1
        host = Host(id=hid, name=name, memory=memory, cores=cores, version=version)
        self._t.hosts[hid] = host
        return host

    def get(self, host_id: HostId) -> Host:
        try:
            return self._t.hosts[host_id]
        except KeyError:
            raise NotFound(f"host {host_id} does not exist") from None

    def get_by_name(self, name: str) -> Host:
        for host in self._t.hosts.values():
            if host.name == name:
                return host
        raise NotFound(f"no host is named {name!r}")

    def up_ids(self) -> list[HostId]:
        return sorted(h.id for h in self._t.hosts.values() if h.up)

    def silent(self, before: datetime) -> list[Host]:
        aware(before)
        heard = [
            h
            for h in self._t.hosts.values()
            if h.up and (h.last_heartbeat is None or h.last_heartbeat < before)
        ]
        return page(heard, None, None)

    def lapsed(self, before: datetime) -> list[Host]:
        aware(before)
        over = [
            h
            for h in self._t.hosts.values()
            if not h.up and h.lease_expires is not None and h.lease_expires <= before
        ]
        return page(over, None, None)

    def list(
        self,
        *,
        ids: Collection[HostId] | None = None,
        after_id: HostId | None = None,
        limit: int | None = None,
    ) -> list[Host]:
        chosen = self._t.hosts.values()
        return page([h for h in chosen if ids is None or h.id in ids], after_id, limit)

    def lock(self, host_id: HostId) -> Host:
        """Transactions are serialised by the store's lock already."""
        return self.get(host_id)

    def set_state(self, host_id: HostId, expected: HostState, new: HostState) -> Host:
        host = self.get(host_id)
        if host.state is not expected:
            raise StateConflict(f"host {host_id} is {host.state.name}, not {expected.name}")
        return self._put(replace(host, state=new))

    def _put(self, host: Host) -> Host:
        self._t.hosts[host.id] = host
        return host

    def update(self, host_id: HostId, **fields: object) -> Host:
        host = self.get(host_id)
        given = {k: v for k, v in fields.items() if v is not None}
        for stamp in ("last_heartbeat", "lease_expires"):
            if stamp in given:
                aware(given[stamp])  # type: ignore[arg-type]
        if "config" in given:
            given["config"] = dict(given["config"])  # type: ignore[call-overload]
        return self._put(replace(host, **given))  # type: ignore[arg-type]

    def renew(self, renewals: Sequence[Renewal]) -> set[HostId]:
        gone: set[HostId] = set()
        for r in renewals:
            host = self._t.hosts.get(r.host_id)
            if host is None:
                gone.add(r.host_id)
                continue
            aware(r.at)
            lease = host.lease_expires
            if r.lease_expires is not None:
                aware(r.lease_expires)
                lease = r.lease_expires
            self._put(
                replace(host, last_heartbeat=r.at, load=r.load, decayed=False, lease_expires=lease)
            )
            if not host.up:
                gone.add(r.host_id)
        return gone

    def add_reservation(self, host_id: HostId, user_id: UserId) -> Host:
        host = self.get(host_id)
        if user_id not in self._t.users:
            raise NotFound(f"user {user_id} does not exist")
        if user_id in host.reserved:
            return host
        return self._put(replace(host, reserved=tuple(sorted((*host.reserved, user_id)))))

    def remove_reservation(self, host_id: HostId, user_id: UserId) -> Host:
        host = self.get(host_id)
        return self._put(replace(host, reserved=tuple(u for u in host.reserved if u != user_id)))

    def remove(self, host_id: HostId) -> None:
        self.get(host_id)
        del self._t.hosts[host_id]
        self._t.links.pop(host_id, None)

    def set_link(
        self,
        host_id: HostId,
        *,
        endpoint: str,
        secret: str,
        user_id: UserId,
        now: datetime,
        peer_secret: str | None = None,
    ) -> NodeLink:
        bounded("a node endpoint", endpoint, ENDPOINT_MAX)
        bounded("a node secret", secret, SECRET_MAX)
        if peer_secret is not None:
            bounded("a node's peer secret", peer_secret, SECRET_MAX)
        aware(now)
        self.get(host_id)
        if user_id not in self._t.users:
            raise NotFound(f"user {user_id} does not exist")
        old = self._t.links.get(host_id)
        kept = old.witnesses if old is not None else WitnessSets()
        link = NodeLink(host_id, endpoint, secret, user_id, now, peer_secret, kept)
        self._t.links[host_id] = link
        return link

    def set_witnesses(self, host_id: HostId, witnesses: WitnessSets) -> None:
        link = self._t.links.get(host_id)
        if link is None:
            raise NotFound(f"host {host_id} has no node link")
        self._t.links[host_id] = replace(link, witnesses=witnesses)

    def link(self, host_id: HostId) -> NodeLink | None:
        return self._t.links.get(host_id)

    def links(self) -> dict[HostId, NodeLink]:
        return dict(sorted(self._t.links.items()))


class _Networks:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(self, network_id: NetworkId, name: str) -> Network:
        if network_id in self._t.networks:
            raise AlreadyExists(f"network {network_id} exists already")
        if any(n.name == name for n in self._t.networks.values()):
            raise AlreadyExists(f"a network named {name!r} exists already")
        net = Network(id=network_id, name=name)
        self._t.networks[network_id] = net
        return net

    def get(self, network_id: NetworkId) -> Network:
        try:
            return self._t.networks[network_id]
        except KeyError:
            raise NotFound(f"network {network_id} does not exist") from None

    def list(self, *, after_id: NetworkId | None = None, limit: int | None = None) -> list[Network]:
        return page(self._t.networks.values(), after_id, limit)

    def remove(self, network_id: NetworkId) -> None:
        self.get(network_id)
        if any(n.network == network_id for i in self._t.instances.values() for n in i.nics):
            raise InvalidState(f"network {network_id} still has instances on it")
        del self._t.networks[network_id]


class _Events:
    def __init__(self, t: Tables) -> None:
        self._t = t

    def add(
        self, instance_id: InstanceId, kind: str, message: str, *, now: datetime
    ) -> InstanceEvent:
        bounded("an event kind", kind, EVENT_KIND_MAX)
        aware(now)
        event = InstanceEvent(self._t.next_event, instance_id, now, kind, event_message(message))
        self._t.next_event += 1
        self._t.events[instance_id] = (*self._t.events.get(instance_id, ()), event)
        return event

    def list(
        self, instance_id: InstanceId, *, limit: int = 100, after_id: int | None = None
    ) -> list[InstanceEvent]:
        check_limit(limit)
        events = self._t.events.get(instance_id, ())
        if after_id is not None:
            return [e for e in events if e.id > after_id][:limit]
        return list(events[-limit:]) if limit else []

    def purge_before(self, when: datetime) -> int:
        aware(when)
        purged = 0
        for iid, events in list(self._t.events.items()):
            kept = tuple(e for e in events if e.at >= when)
            purged += len(events) - len(kept)
            if not kept:
                del self._t.events[iid]
            elif len(kept) < len(events):
                self._t.events[iid] = kept
        return purged

    def purge_beyond(self, per_instance: int) -> int:
        keep = check_limit(per_instance)
        purged = 0
        for iid, events in list(self._t.events.items()):
            if len(events) <= keep:
                continue
            purged += len(events) - keep
            if keep:
                self._t.events[iid] = events[-keep:]
            else:
                del self._t.events[iid]
        return purged


class _Tx:
    def __init__(self, t: Tables) -> None:
        self.instances = _Instances(t)
        self.hosts = _Hosts(t)
        self.networks = _Networks(t)
        self.users = MemoryUsers(t)
        self.tokens = MemoryTokens(t)
        self.access_keys = MemoryAccessKeys(t)
        self.key_pairs = MemoryKeyPairs(t)
        self.key_pair_tags = MemoryTags(t, "key_pair_tags", exists=t.key_pairs.__contains__)
        self.image_tags = MemoryTags(t, "image_tags")
        self.volumes = MemoryVolumes(t)
        self.snapshots = MemorySnapshots(t)
        self.volume_tags = MemoryTags(t, "volume_tags", t.volumes.__contains__, "volume")
        self.snapshot_tags = MemoryTags(t, "snapshot_tags", t.snapshots.__contains__, "snapshot")
        self.security_groups = MemorySecurityGroups(t)
        self.security_group_tags = MemoryTags(
            t, "security_group_tags", t.security_groups.__contains__, "security group"
        )
        self.events = _Events(t)
        self.addresses = MemoryAddresses(t)


class MemoryStore:
    """The fake store. Thread-safe; transactions are serialised."""

    max_writers = 1  # transactions are serialised anyway

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tables = Tables()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[_Tx]:
        with self._lock:
            if not write:
                yield _Tx(self._tables)
                return
            work = copy.copy(self._tables)
            for name in DICTS:
                setattr(work, name, dict(getattr(self._tables, name)))
            yield _Tx(work)
            self._tables = work

    def close(self) -> None:
        """Nothing to release."""


if TYPE_CHECKING:  # mypy proves here that the fake keeps the contract
    _CONFORMS: type[Store] = MemoryStore
