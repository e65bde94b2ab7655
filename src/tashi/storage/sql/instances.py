"""The instance repository over SQL: inserts, filtered pages, compare-and-swap saves.

Implements ``InstanceRepository`` of ``storage/contract.py`` on the ``instances`` and ``nics``
tables of ``tables.py``, through the error seam of ``db.py``. ``find`` costs two queries for a
whole page (instances, then the page's NICs), never one per instance; rows become records in
``_records``, the hot loop that decides how fast a large listing is. ``usage_by_host`` is one
grouped query over the covering index ``ix_instances_usage``, ``usage_on_host`` one sum over it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from tashi.domain.errors import AlreadyExists, NotFound, StateConflict, TashiError
from tashi.domain.ids import HostId, InstanceId, UserId
from tashi.domain.models import DiskConfig, Instance, InstanceSpec, NicConfig, Usage
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceChanges, InstanceFilter
from tashi.storage.shared import last_nic, new_instance
from tashi.storage.sql.db import Db, Violation
from tashi.storage.sql.tables import addresses as t_addr
from tashi.storage.sql.tables import instances as t_inst
from tashi.storage.sql.tables import nics as t_nics

_EVERYTHING = InstanceFilter()
_STATES = {state.value: state for state in InstanceState}
_COLUMNS = (
    t_inst.c.id,
    t_inst.c.name,
    t_inst.c.user_id,
    t_inst.c.state,
    t_inst.c.cores,
    t_inst.c.memory,
    sa.cast(t_inst.c.disks, sa.Text),  # raw JSON text: equal texts are parsed once (_records)
    t_inst.c.cpu_share,
    sa.cast(t_inst.c.hints, sa.Text),
    t_inst.c.group_name,
    t_inst.c.host_id,
    t_inst.c.vm_id,
    t_inst.c.reason,
    t_inst.c.created_at,
    t_inst.c.state_since,
)
_NIC_COLUMNS = (t_nics.c.instance_id, t_nics.c.network_id, t_nics.c.mac, t_nics.c.ip)

# The statements of activateVm's hot path, built once: SQLAlchemy then reuses their cache keys
# and compiled forms, where a statement built per call costs more than SQLite's work on it.
_BY_ID = sa.select(*_COLUMNS).where(t_inst.c.id == sa.bindparam("iid"))
_NICS_OF = (
    sa.select(t_nics.c.network_id, t_nics.c.mac, t_nics.c.ip)
    .where(t_nics.c.instance_id == sa.bindparam("iid"))
    .order_by(t_nics.c.idx)
)
# The SET clause is the parameters' column names; the bound names must differ from them.
_CAS = sa.update(t_inst).where(
    t_inst.c.id == sa.bindparam("cas_id"), t_inst.c.state == sa.bindparam("cas_state")
)
_USAGE_ON = sa.select(
    sa.func.count(),
    sa.func.coalesce(sa.func.sum(t_inst.c.memory), 0),
    sa.func.coalesce(sa.func.sum(t_inst.c.cores), 0),
).where(
    t_inst.c.host_id == sa.bindparam("hid"),
    t_inst.c.state.in_(sa.bindparam("states", expanding=True)),
)


class SqlInstances:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(
        self, owner: UserId, spec: InstanceSpec, *, unique_name: bool, now: datetime
    ) -> Instance:
        def explain(v: Violation) -> TashiError:
            if v.constraint == "uq_instances_name_key":
                return AlreadyExists(f"an instance named {spec.name!r} exists already")
            return NotFound(f"user {owner} does not exist")

        row = {
            "name": spec.name,
            "name_key": spec.name if unique_name else None,
            "user_id": owner,
            "state": InstanceState.Pending.value,
            "host_id": None,
            "vm_id": None,
            "cores": spec.cores,
            "memory": spec.memory,
            "cpu_share": spec.cpu_share,
            "disks": _disk_rows(spec.disks),
            "hints": dict(spec.hints),
            "group_name": spec.group_name,
            "reason": None,
            "created_at": now,
            "state_since": now,
        }
        iid = InstanceId(self._db.insert(sa.insert(t_inst), row, explain=explain))
        if spec.nics:
            self._add_nics(iid, spec.nics)
        return new_instance(iid, owner, spec, now)

    def adopt(self, instance: Instance, *, unique_name: bool, now: datetime) -> Instance:
        def explain(v: Violation) -> TashiError:
            if v.constraint == "uq_instances_name_key":
                return AlreadyExists(f"an instance named {instance.name!r} exists already")
            if v.constraint and "user" in v.constraint:
                return NotFound(f"user {instance.user_id} does not exist")
            return AlreadyExists(f"instance {instance.id} exists already")

        row = {
            "id": instance.id,
            "name": instance.name,
            "name_key": instance.name if unique_name else None,
            "user_id": instance.user_id,
            "state": instance.state.value,
            "host_id": instance.host_id,
            "vm_id": instance.vm_id,
            "cores": instance.cores,
            "memory": instance.memory,
            "cpu_share": instance.cpu_share,
            "disks": _disk_rows(instance.disks),
            "hints": dict(instance.hints),
            "group_name": instance.group_name,
            "reason": instance.reason,
            "created_at": now,
            "state_since": now,
        }
        self._db.execute(sa.insert(t_inst), row, explain=explain)
        if self._db.dialect == "postgresql":
            # An explicit id does not move the sequence; keep later ids above this one.
            self._db.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('instances', 'id'),"
                    " GREATEST((SELECT max(id) FROM instances),"
                    " (SELECT last_value FROM instances_id_seq)))"
                )
            )
        if instance.nics:
            self._add_nics(instance.id, instance.nics)
        return replace(instance, created_at=now, state_since=now)

    def _add_nics(self, iid: InstanceId, nics: Sequence[NicConfig], *, first: int = 0) -> None:
        def explain(v: Violation) -> TashiError:
            if v.constraint == "uq_nics_mac":
                macs = v.value or ", ".join(n.mac for n in nics)
                return AlreadyExists(f"MAC address {macs} in use")
            if v.constraint == "uq_nics_network_ip":
                return AlreadyExists(f"address {_ips(v, nics)} is in use on its network")
            networks = ", ".join(sorted({str(n.network) for n in nics}))
            return NotFound(f"network {networks} does not exist")

        rows = [
            {"instance_id": iid, "idx": i, "network_id": n.network, "mac": n.mac, "ip": n.ip}
            for i, n in enumerate(nics, start=first)
        ]
        self._db.execute(sa.insert(t_nics), rows, explain=explain)

    def get(self, instance_id: InstanceId) -> Instance:
        row = self._db.execute(_BY_ID, {"iid": instance_id}).first()
        if row is None:
            raise NotFound(f"instance {instance_id} does not exist")
        nics = tuple(NicConfig(*n) for n in self._db.execute(_NICS_OF, {"iid": instance_id}))
        return next(iter(_records([row], {instance_id: nics})))

    def find(self, where: InstanceFilter = _EVERYTHING) -> list[Instance]:
        conditions = _conditions(where)
        query = sa.select(*_COLUMNS).where(*conditions).order_by(t_inst.c.id)
        if where.limit is not None:
            query = query.limit(where.limit)
        rows = self._db.execute(query).all()
        if not rows:
            return []
        # The page is exactly "matches the filter, id up to the last one returned", so the
        # same conditions bounded by that id select the page's NICs in one query.
        nic_query = (
            sa.select(*_NIC_COLUMNS)
            .select_from(t_nics.join(t_inst, t_inst.c.id == t_nics.c.instance_id))
            .where(*conditions, t_inst.c.id <= rows[-1][0])
            .order_by(t_nics.c.instance_id, t_nics.c.idx)
        )
        nics: dict[int, tuple[NicConfig, ...]] = {}
        for iid, network, mac, ip in self._db.execute(nic_query).all():
            nics[iid] = (*nics.get(iid, ()), NicConfig(network, mac, ip))
        return list(_records(rows, nics))

    def count(self, where: InstanceFilter = _EVERYTHING) -> int:
        query = sa.select(sa.func.count()).select_from(t_inst).where(*_conditions(where))
        return int(self._db.execute(query).scalar_one())

    def macs_in_use(self, macs: Sequence[str]) -> set[str]:
        if not macs:
            return set()
        query = sa.select(t_nics.c.mac).where(t_nics.c.mac.in_(list(macs)))
        return set(self._db.execute(query).scalars())

    def transition(
        self,
        instance_id: InstanceId,
        expected: InstanceState,
        new: InstanceState,
        *,
        now: datetime,
        changes: InstanceChanges | None = None,
    ) -> Instance:
        values = _changed_values(changes or InstanceChanges())
        values["state"] = new.value
        if new is not expected:
            values["state_since"] = now
        values["cas_id"], values["cas_state"] = instance_id, expected.value
        if self._db.execute(_CAS, values).rowcount == 0:
            raise self._cas_failure(instance_id, expected)
        if changes is not None and changes.nics:
            self._set_ips(instance_id, changes.nics)
        return self.get(instance_id)

    def _set_ips(self, instance_id: InstanceId, nics: Sequence[NicConfig]) -> None:
        def explain(v: Violation) -> TashiError:
            return AlreadyExists(f"address {_ips(v, nics)} is in use on its network")

        stmt = (
            sa.update(t_nics)
            .where(t_nics.c.instance_id == sa.bindparam("iid"), t_nics.c.mac == sa.bindparam("m"))
            .values(ip=sa.bindparam("new_ip"))
        )
        rows = [{"iid": instance_id, "m": n.mac, "new_ip": n.ip} for n in nics]
        self._db.execute(stmt, rows, explain=explain)

    def add_nic(
        self, instance_id: InstanceId, expected: InstanceState, nic: NicConfig, *, now: datetime
    ) -> Instance:
        had = self.transition(instance_id, expected, expected, now=now).nics
        self._add_nics(instance_id, [nic], first=len(had))
        return self.get(instance_id)

    def remove_nic(
        self, instance_id: InstanceId, expected: InstanceState, mac: str, *, now: datetime
    ) -> Instance:
        inst = self.transition(instance_id, expected, expected, now=now)
        index = last_nic(inst, mac)
        if index is None:
            return inst
        gone = (t_nics.c.instance_id == instance_id, t_nics.c.idx == index)
        self._db.execute(sa.delete(t_nics).where(*gone))
        held = (t_addr.c.instance_id == instance_id, t_addr.c.nic_index == index)
        self._db.execute(sa.delete(t_addr).where(*held))
        return self.get(instance_id)

    def remove(self, instance_id: InstanceId, expected: InstanceState) -> None:
        cas = sa.delete(t_inst).where(t_inst.c.id == instance_id, t_inst.c.state == expected.value)
        if self._db.execute(cas).rowcount == 0:
            raise self._cas_failure(instance_id, expected)

    def usage_by_host(
        self, states: Sequence[InstanceState], host_ids: Collection[HostId] | None = None
    ) -> dict[HostId, Usage]:
        c = t_inst.c
        conditions = _on_hosts(states)
        if host_ids is not None:
            conditions.append(c.host_id.in_(sorted(host_ids)))
        query = (
            sa.select(c.host_id, sa.func.count(), sa.func.sum(c.memory), sa.func.sum(c.cores))
            .where(*conditions)
            .group_by(c.host_id)
            .order_by(c.host_id)
        )
        return {
            host: Usage(int(count), int(memory), int(cores))  # MariaDB sums are Decimals
            for host, count, memory, cores in self._db.execute(query)
        }

    def usage_on_host(self, host_id: HostId, states: Sequence[InstanceState]) -> Usage:
        params = {"hid": host_id, "states": [s.value for s in states]}
        count, memory, cores = self._db.execute(_USAGE_ON, params).one()
        return Usage(int(count), int(memory), int(cores))  # MariaDB sums are Decimals

    def _cas_failure(self, instance_id: InstanceId, expected: InstanceState) -> TashiError:
        """Why a compare-and-swap matched no row: the row is gone, or its state moved on."""
        query = sa.select(t_inst.c.state).where(t_inst.c.id == instance_id)
        state = self._db.execute(query).scalar_one_or_none()
        if state is None:
            return NotFound(f"instance {instance_id} does not exist")
        return StateConflict(
            f"instance {instance_id} is {_STATES[state].name}, not {expected.name}"
        )


def _conditions(where: InstanceFilter) -> list[ColumnElement[bool]]:
    c = t_inst.c
    conditions: list[ColumnElement[bool]] = []
    if where.ids is not None:
        conditions.append(c.id.in_(list(where.ids)))
    if where.name is not None:
        conditions.append(c.name == where.name)
    if where.name_prefix:
        # A range instead of LIKE: it uses the name index on all three databases, and names
        # compare by code point everywhere (coltypes.py), so the range is exactly the prefix.
        conditions.append(c.name >= where.name_prefix)
        conditions.append(c.name < _successor(where.name_prefix))
    if where.user_id is not None:
        conditions.append(c.user_id == where.user_id)
    if where.states is not None:
        conditions.append(c.state.in_([s.value for s in where.states]))
    if where.host_id is not None:
        conditions.append(c.host_id == where.host_id)
    if where.group_name is not None:
        conditions.append(c.group_name == where.group_name)
    if where.after_id is not None:
        conditions.append(c.id > where.after_id)
    return conditions


def _on_hosts(states: Sequence[InstanceState]) -> list[ColumnElement[bool]]:
    """Instances in ``states`` that have a host."""
    return [t_inst.c.host_id.is_not(None), t_inst.c.state.in_([s.value for s in states])]


def _successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix``."""
    head = prefix.rstrip(chr(0x10FFFF))
    if not head:
        return chr(0x10FFFF) * (len(prefix) + 1)
    return head[:-1] + chr(ord(head[-1]) + 1)


def _changed_values(c: InstanceChanges) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if c.clear_host or c.host_id is not None:
        values["host_id"] = None if c.clear_host else c.host_id
    if c.clear_vm or c.vm_id is not None:
        values["vm_id"] = None if c.clear_vm else c.vm_id
    if c.clear_reason or c.reason is not None:
        values["reason"] = None if c.clear_reason else c.reason
    if c.hints is not None:
        values["hints"] = dict(c.hints)
    if c.cpu_share is not None:
        values["cpu_share"] = c.cpu_share
    if c.cores is not None:
        values["cores"] = c.cores
    if c.memory is not None:
        values["memory"] = c.memory
    if c.disks is not None:
        values["disks"] = _disk_rows(c.disks)
    return values


def _ips(v: Violation, nics: Sequence[NicConfig]) -> str:
    """The address that is taken: ours if we asked for one, else what the database says."""
    ips = [n.ip for n in nics if n.ip]
    if len(ips) == 1 or not v.value:
        return ", ".join(ips)
    # PostgreSQL reports the key as "1, 10.0.0.5", MariaDB as "1-10.0.0.5".
    return v.value.rpartition(", ")[2] if ", " in v.value else v.value.partition("-")[2]


def _records(rows: Iterable[Any], nics: dict[int, tuple[NicConfig, ...]]) -> Iterable[Instance]:
    states = _STATES
    loads = orjson.loads
    # Most instances share a handful of disk lists; DiskConfig tuples are immutable, so one
    # parse serves them all (and spares the garbage collector most of a large listing).
    disk_cache: dict[str, tuple[DiskConfig, ...]] = {}
    for (
        iid, name, user_id, state, cores, memory, disks_json, cpu_share, hints_json, group_name,
        host_id, vm_id, reason, created_at, state_since,
    ) in rows:  # fmt: skip
        disks = disk_cache.get(disks_json)
        if disks is None:
            disks = disk_cache[disks_json] = _disks(disks_json)
        yield Instance(
            iid,
            name,
            user_id,
            states[state],
            cores,
            memory,
            disks,
            nics.get(iid, ()),
            cpu_share,
            loads(hints_json),
            group_name,
            host_id,
            vm_id,
            reason,
            created_at,
            state_since,
        )


def _disk_rows(disks: Sequence[DiskConfig]) -> list[dict[str, Any]]:
    return [_disk_row(d) for d in disks]


def _disk_row(disk: DiskConfig) -> dict[str, Any]:
    row: dict[str, Any] = {"uri": disk.uri, "persistent": disk.persistent, "copy": disk.copy}
    if disk.device is not None:  # a volume's (EC2's EBS): written only when set
        row["device"] = disk.device
    return row


def _disks(text: str) -> tuple[DiskConfig, ...]:
    # Rows written before SLA@SOI image copy have no "copy" key; only volumes have "device".
    return tuple(
        DiskConfig(d["uri"], d["persistent"], d.get("copy", False), d.get("device"))
        for d in orjson.loads(text)
    )
