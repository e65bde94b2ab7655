"""The host and network repositories over SQL.

Implements ``HostRepository`` and ``NetworkRepository`` of ``storage/contract.py`` on the
``hosts``, ``host_reservations``, ``node_links`` and ``networks`` tables of ``tables.py``. A
host's reservations come with it (one extra query for a whole listing); its node link is read
on its own (it holds a secret that most readers of hosts have no business with). Errors pass
through ``db.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from tashi.domain.errors import AlreadyExists, InvalidState, NotFound, StateConflict, TashiError
from tashi.domain.ids import HostId, NetworkId, UserId
from tashi.domain.models import Host, Network, NodeLink
from tashi.domain.nodes import Renewal
from tashi.domain.states import HostState
from tashi.domain.witnesses import WitnessSets
from tashi.storage.contract import ENDPOINT_MAX, SECRET_MAX
from tashi.storage.shared import bounded, check_limit
from tashi.storage.sql.db import Db, Violation
from tashi.storage.sql.tables import host_reservations as t_res
from tashi.storage.sql.tables import hosts as t_hosts
from tashi.storage.sql.tables import networks as t_nets
from tashi.storage.sql.tables import nics as t_nics
from tashi.storage.sql.tables import node_links as t_links

_HOST_STATES = {state.value: state for state in HostState}
_HOST_COLUMNS = (
    t_hosts.c.id,
    t_hosts.c.name,
    t_hosts.c.up,
    t_hosts.c.decayed,
    t_hosts.c.state,
    t_hosts.c.memory,
    t_hosts.c.cores,
    t_hosts.c.cpu_speed,
    t_hosts.c.version,
    t_hosts.c.notes,
    t_hosts.c.config,
    t_hosts.c.last_heartbeat,
    t_hosts.c.load,
    t_hosts.c.lease_expires,
)
# One host by id (get, and lock's row lock), built once: SQLAlchemy reuses their cache keys and
# compiled forms (activateVm reads and locks a host per claim).
_BY_ID = sa.select(*_HOST_COLUMNS).where(t_hosts.c.id == sa.bindparam("hid"))
_LOCK = _BY_ID.with_for_update()
_RESERVED_ON = (
    sa.select(t_res.c.user_id)
    .where(t_res.c.host_id == sa.bindparam("hid"))
    .order_by(t_res.c.user_id)
)
_LINK_COLUMNS = (
    t_links.c.host_id,
    t_links.c.endpoint,
    t_links.c.secret,
    t_links.c.user_id,
    t_links.c.registered_at,
    t_links.c.peer_secret,
    t_links.c.witnesses,
)


class SqlHosts:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, name: str, *, memory: int, cores: int, version: str, now: datetime) -> Host:
        def explain(v: Violation) -> TashiError:
            return AlreadyExists(f"a host named {name!r} exists already")

        host = Host(id=HostId(0), name=name, memory=memory, cores=cores, version=version)
        row = {
            "name": name,
            "up": host.up,
            "decayed": host.decayed,
            "state": host.state.value,
            "memory": memory,
            "cores": cores,
            "cpu_speed": host.cpu_speed,
            "version": version,
            "notes": host.notes,
            "config": {},
            "last_heartbeat": None,
            "load": None,
            "created_at": now,
        }
        hid = HostId(self._db.insert(sa.insert(t_hosts), row, explain=explain))
        return Host(id=hid, name=name, memory=memory, cores=cores, version=version)

    def _select(self, *conditions: sa.ColumnElement[bool], limit: int | None = None) -> list[Host]:
        query = sa.select(*_HOST_COLUMNS).where(*conditions).order_by(t_hosts.c.id)
        if limit is not None:
            query = query.limit(check_limit(limit))
        rows = self._db.execute(query).all()
        if not rows:
            return []
        query = (
            sa.select(t_res.c.host_id, t_res.c.user_id)
            .where(t_res.c.host_id.in_([r[0] for r in rows]))
            .order_by(t_res.c.host_id, t_res.c.user_id)
        )
        reserved: dict[int, list[UserId]] = {}
        for host_id, user_id in self._db.execute(query):
            reserved.setdefault(host_id, []).append(user_id)
        return [_host(row, reserved.get(row[0], [])) for row in rows]

    def get(self, host_id: HostId) -> Host:
        return self._one(_BY_ID, host_id)

    def _one(self, query: sa.Select[Any], host_id: HostId) -> Host:
        row = self._db.execute(query, {"hid": host_id}).first()
        if row is None:
            raise NotFound(f"host {host_id} does not exist")
        return _host(row, self._db.execute(_RESERVED_ON, {"hid": host_id}).scalars())

    def get_by_name(self, name: str) -> Host:
        found = self._select(t_hosts.c.name == name)
        if not found:
            raise NotFound(f"no host is named {name!r}")
        return found[0]

    def lock(self, host_id: HostId) -> Host:
        # FOR UPDATE is rendered by PostgreSQL and MariaDB; SQLite's dialect drops it, and its
        # write units hold the database's write lock from BEGIN IMMEDIATE anyway.
        return self._one(_LOCK, host_id)

    def up_ids(self) -> list[HostId]:
        query = sa.select(t_hosts.c.id).where(t_hosts.c.up.is_(True)).order_by(t_hosts.c.id)
        return [HostId(row.id) for row in self._db.execute(query)]

    def silent(self, before: datetime) -> list[Host]:
        heard = t_hosts.c.last_heartbeat
        return self._select(t_hosts.c.up.is_(True), sa.or_(heard.is_(None), heard < before))

    def lapsed(self, before: datetime) -> list[Host]:
        lease = t_hosts.c.lease_expires
        return self._select(t_hosts.c.up.is_(False), lease.is_not(None), lease <= before)

    def list(
        self,
        *,
        ids: Collection[HostId] | None = None,
        after_id: HostId | None = None,
        limit: int | None = None,
    ) -> list[Host]:
        conditions: list[sa.ColumnElement[bool]] = [sa.true()]
        if ids is not None:
            conditions.append(t_hosts.c.id.in_(sorted(ids)))
        if after_id is not None:
            conditions.append(t_hosts.c.id > after_id)
        return self._select(*conditions, limit=limit)

    def set_state(self, host_id: HostId, expected: HostState, new: HostState) -> Host:
        cas = (
            sa.update(t_hosts)
            .where(t_hosts.c.id == host_id, t_hosts.c.state == expected.value)
            .values(state=new.value)
        )
        if self._db.execute(cas).rowcount == 0:
            state = self.get(host_id).state  # NotFound if it is gone
            raise StateConflict(f"host {host_id} is {state.name}, not {expected.name}")
        return self.get(host_id)

    def update(self, host_id: HostId, **fields: Any) -> Host:
        values = {k: v for k, v in fields.items() if v is not None}
        if "config" in values:
            values["config"] = dict(values["config"])
        if values:
            stmt = sa.update(t_hosts).where(t_hosts.c.id == host_id).values(values)
            if self._db.execute(stmt).rowcount == 0:
                raise NotFound(f"host {host_id} does not exist")
        return self.get(host_id)

    def renew(self, renewals: Sequence[Renewal]) -> set[HostId]:
        if not renewals:
            return set()
        for lease in (False, True):  # one executemany each: with a lease and without
            rows = [
                {"b_id": r.host_id, "b_at": r.at, "b_load": r.load, "b_lease": r.lease_expires}
                for r in renewals
                if (r.lease_expires is not None) is lease
            ]
            if rows:
                self._db.execute(_RENEW_LEASE if lease else _RENEW, rows)
        ids = sorted({r.host_id for r in renewals})
        up = sa.select(t_hosts.c.id).where(t_hosts.c.id.in_(ids), t_hosts.c.up.is_(True))
        return set(ids) - {HostId(row.id) for row in self._db.execute(up)}

    def add_reservation(self, host_id: HostId, user_id: UserId) -> Host:
        def explain(v: Violation) -> TashiError:
            return NotFound(f"user {user_id} does not exist")

        self.get(host_id)
        row = {"host_id": host_id, "user_id": user_id}
        self._db.execute(_insert_if_absent(self._db.dialect, row), explain=explain)
        return self.get(host_id)

    def remove_reservation(self, host_id: HostId, user_id: UserId) -> Host:
        self.get(host_id)
        self._db.execute(
            sa.delete(t_res).where(t_res.c.host_id == host_id, t_res.c.user_id == user_id)
        )
        return self.get(host_id)

    def remove(self, host_id: HostId) -> None:
        if self._db.execute(sa.delete(t_hosts).where(t_hosts.c.id == host_id)).rowcount == 0:
            raise NotFound(f"host {host_id} does not exist")

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
        def explain(v: Violation) -> TashiError:
            if v.constraint == "fk_node_links_host":  # removed since we looked (not on SQLite)
                return NotFound(f"host {host_id} does not exist")
            return NotFound(f"user {user_id} does not exist")

        bounded("a node endpoint", endpoint, ENDPOINT_MAX)
        bounded("a node secret", secret, SECRET_MAX)
        if peer_secret is not None:
            bounded("a node's peer secret", peer_secret, SECRET_MAX)
        exists = sa.select(t_hosts.c.id).where(t_hosts.c.id == host_id)
        if self._db.execute(exists).first() is None:  # so that a foreign key error is the user's
            raise NotFound(f"host {host_id} does not exist")
        row = {
            "host_id": host_id,
            "endpoint": endpoint,
            "secret": secret,
            "user_id": user_id,
            "registered_at": now,
            "peer_secret": peer_secret,
        }
        self._db.execute(_upsert_link(self._db.dialect, row), explain=explain)
        link = self.link(host_id)  # read back: the witness sets are kept across registrations
        if link is None:  # pragma: no cover - written just now, in this transaction
            raise NotFound(f"host {host_id} does not exist")
        return link

    def set_witnesses(self, host_id: HostId, witnesses: WitnessSets) -> None:
        stmt = (
            sa.update(t_links)
            .where(t_links.c.host_id == host_id)
            .values(witnesses=witnesses.to_json())
        )
        if self._db.execute(stmt).rowcount == 0:
            raise NotFound(f"host {host_id} has no node link")

    def link(self, host_id: HostId) -> NodeLink | None:
        query = sa.select(*_LINK_COLUMNS).where(t_links.c.host_id == host_id)
        row = self._db.execute(query).one_or_none()
        return None if row is None else _link(row)

    def links(self) -> dict[HostId, NodeLink]:
        query = sa.select(*_LINK_COLUMNS).order_by(t_links.c.host_id)
        return {row[0]: _link(row) for row in self._db.execute(query)}


def _link(row: Any) -> NodeLink:
    host_id, endpoint, secret, user_id, registered_at, peer_secret, witnesses = row
    return NodeLink(
        host_id,
        endpoint,
        secret,
        user_id,
        registered_at,
        peer_secret=peer_secret,
        witnesses=WitnessSets.from_json(witnesses),
    )


def _upsert_link(dialect: str, row: dict[str, Any]) -> sa.Insert:
    """INSERT of a node link that replaces the host's earlier one, in one statement (a
    delete-then-insert would let two registrations of one host both insert and one fail)."""
    changed = ("endpoint", "secret", "user_id", "registered_at", "peer_secret")
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(t_links).values(row)
        return stmt.on_conflict_do_update(
            index_elements=[t_links.c.host_id],
            set_={name: stmt.excluded[name] for name in changed},
        )
    mysql_stmt = mysql.insert(t_links).values(row)
    return mysql_stmt.on_duplicate_key_update({name: mysql_stmt.inserted[name] for name in changed})


_RENEW = (
    sa.update(t_hosts)
    .where(t_hosts.c.id == sa.bindparam("b_id"))
    .values(last_heartbeat=sa.bindparam("b_at"), load=sa.bindparam("b_load"), decayed=False)
)
_RENEW_LEASE = _RENEW.values(lease_expires=sa.bindparam("b_lease"))


def _insert_if_absent(dialect: str, row: dict[str, int]) -> sa.Insert:
    """INSERT that does nothing when the reservation exists (and still checks foreign keys,
    which MariaDB's INSERT IGNORE would not)."""
    if dialect == "postgresql":
        return postgresql.insert(t_res).values(row).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(t_res).values(row).on_conflict_do_nothing()
    stmt = mysql.insert(t_res).values(row)
    return stmt.on_duplicate_key_update(user_id=stmt.inserted.user_id)


def _host(row: Any, reserved: Iterable[UserId]) -> Host:
    (hid, name, up, decayed, state, memory, cores, cpu_speed, version, notes, config,
     last_heartbeat, load, lease_expires) = row  # fmt: skip
    return Host(
        id=hid,
        name=name,
        up=bool(up),
        decayed=bool(decayed),
        state=_HOST_STATES[state],
        memory=memory,
        cores=cores,
        cpu_speed=cpu_speed,
        version=version,
        notes=notes,
        reserved=tuple(reserved),
        config=config,
        last_heartbeat=last_heartbeat,
        load=load,
        lease_expires=lease_expires,
    )


class SqlNetworks:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, network_id: NetworkId, name: str) -> Network:
        def explain(v: Violation) -> TashiError:
            if v.constraint == "uq_networks_name":
                return AlreadyExists(f"a network named {name!r} exists already")
            return AlreadyExists(f"network {network_id} exists already")

        self._db.execute(sa.insert(t_nets), {"id": network_id, "name": name}, explain=explain)
        return Network(id=network_id, name=name)

    def get(self, network_id: NetworkId) -> Network:
        query = sa.select(t_nets.c.id, t_nets.c.name).where(t_nets.c.id == network_id)
        row = self._db.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"network {network_id} does not exist")
        return Network(id=row[0], name=row[1])

    def list(self, *, after_id: NetworkId | None = None, limit: int | None = None) -> list[Network]:
        query = sa.select(t_nets.c.id, t_nets.c.name).order_by(t_nets.c.id)
        if after_id is not None:
            query = query.where(t_nets.c.id > after_id)
        if limit is not None:
            query = query.limit(check_limit(limit))
        return [Network(id=i, name=n) for i, n in self._db.execute(query)]

    def remove(self, network_id: NetworkId) -> None:
        def explain(v: Violation) -> TashiError:
            return InvalidState(f"network {network_id} still has instances on it")

        self.get(network_id)
        in_use = sa.select(t_nics.c.mac).where(t_nics.c.network_id == network_id).limit(1)
        if self._db.execute(in_use).first() is not None:
            raise explain(Violation(None, None, True, "checked before deleting"))
        self._db.execute(sa.delete(t_nets).where(t_nets.c.id == network_id), explain=explain)
