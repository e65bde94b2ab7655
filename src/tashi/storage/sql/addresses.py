"""The address repository over SQL: the DHCP/DNS hook's allocations in ``addresses``.

Implements ``AddressRepository`` of ``storage/contract.py``. The lowest free address is chosen
in Python (``lowest_free_address``) from the addresses of the network, both allocated and on
NICs; the table's primary key (network, ip) is what makes it race-free: of two units that chose
the same address, the second fails with ``AlreadyExists`` and the caller runs it again.
"""

from __future__ import annotations

import sqlalchemy as sa

from tashi.domain.errors import AlreadyExists, InsufficientResources, NotFound, TashiError
from tashi.domain.ids import InstanceId, NetworkId
from tashi.storage.contract import Address
from tashi.storage.shared import check_limit, lowest_free_address
from tashi.storage.sql.db import Db, Violation
from tashi.storage.sql.tables import addresses as t_addr
from tashi.storage.sql.tables import instances as t_inst
from tashi.storage.sql.tables import networks as t_nets
from tashi.storage.sql.tables import nics as t_nics

_COLUMNS = (t_addr.c.network_id, t_addr.c.ip, t_addr.c.instance_id, t_addr.c.nic_index)


class SqlAddresses:
    def __init__(self, db: Db) -> None:
        self._db = db

    def allocate(
        self,
        instance_id: InstanceId,
        nic_index: int,
        network_id: NetworkId,
        first: str,
        last: str,
    ) -> Address:
        lowest_free_address(first, last, ())  # the range is checked before anything else
        self._exists(t_inst.c.id, instance_id, f"instance {instance_id}")
        self._exists(t_nets.c.id, network_id, f"network {network_id}")
        held = self._one(instance_id, nic_index)
        if held is not None:
            if held.network_id == network_id:
                return held
            self._db.execute(
                sa.delete(t_addr).where(
                    t_addr.c.instance_id == instance_id, t_addr.c.nic_index == nic_index
                )
            )
        taken = list(
            self._db.execute(sa.select(t_addr.c.ip).where(t_addr.c.network_id == network_id))
            .scalars()
            .all()
        )
        on_nics = sa.select(t_nics.c.ip).where(
            t_nics.c.network_id == network_id,
            t_nics.c.ip.is_not(None),
            t_nics.c.instance_id != instance_id,
        )
        taken += self._db.execute(on_nics).scalars().all()
        ip = lowest_free_address(first, last, taken)
        if ip is None:
            raise InsufficientResources(
                f"no free address from {first} to {last} on network {network_id}"
            )

        def explain(v: Violation) -> TashiError:
            if v.foreign_key:
                return NotFound(f"instance {instance_id} or network {network_id} is gone")
            return AlreadyExists(f"address {ip} on network {network_id} was taken meanwhile")

        row = {
            "network_id": network_id,
            "ip": ip,
            "instance_id": instance_id,
            "nic_index": nic_index,
        }
        self._db.execute(sa.insert(t_addr), row, explain=explain)
        return Address(network_id, ip, instance_id, nic_index)

    def release(self, instance_id: InstanceId) -> int:
        stmt = sa.delete(t_addr).where(t_addr.c.instance_id == instance_id)
        return int(self._db.execute(stmt).rowcount)

    def list(
        self,
        *,
        network_id: NetworkId | None = None,
        instance_id: InstanceId | None = None,
        after_instance: InstanceId | None = None,
        instances: int | None = None,
    ) -> list[Address]:
        c = t_addr.c
        conditions: list[sa.ColumnElement[bool]] = []
        if network_id is not None:
            conditions.append(c.network_id == network_id)
        if instance_id is not None:
            conditions.append(c.instance_id == instance_id)
        if after_instance is not None:
            conditions.append(c.instance_id > after_instance)
        if instances is not None:
            page = (
                sa.select(c.instance_id)
                .where(*conditions)
                .group_by(c.instance_id)
                .order_by(c.instance_id)
                .limit(check_limit(instances))
            )
            # two statements: MariaDB refuses a LIMIT in an IN subquery
            chosen = list(self._db.execute(page).scalars())
            if not chosen:
                return []
            conditions.append(c.instance_id.between(chosen[0], chosen[-1]))
        query = sa.select(*_COLUMNS).where(*conditions).order_by(c.instance_id, c.nic_index)
        return [Address(*row) for row in self._db.execute(query)]

    def _one(self, instance_id: InstanceId, nic_index: int) -> Address | None:
        query = sa.select(*_COLUMNS).where(
            t_addr.c.instance_id == instance_id, t_addr.c.nic_index == nic_index
        )
        row = self._db.execute(query).one_or_none()
        return Address(*row) if row is not None else None

    def _exists(self, column: sa.Column[int], key: int, what: str) -> None:
        if self._db.execute(sa.select(column).where(column == key)).first() is None:
            raise NotFound(f"{what} does not exist")
