"""Turn what a user typed (an id or a name) into a record, as the original ``--instance`` did.

A reference of digits only is an id; anything else a name. Instance names cannot be all digits
(validation refuses them), so the two never collide. A name shared by several instances (with
``allowDuplicateNames``) is refused with the ids to choose from.
"""

from __future__ import annotations

from tashi.domain.errors import InvalidInput, NotFound
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import Host, Instance, Network, User
from tashi.storage.contract import InstanceFilter, Transaction


def _as_id(ref: str) -> int | None:
    text = ref.strip()
    return int(text) if text.isdigit() else None


def instance(tx: Transaction, ref: str) -> Instance:
    number = _as_id(ref)
    if number is not None:
        return tx.instances.get(InstanceId(number))
    found = tx.instances.find(InstanceFilter(name=ref.strip(), limit=10))
    if not found:
        raise NotFound(f"no instance is named {ref!r}")
    if len(found) > 1:
        ids = ", ".join(str(i.id) for i in found)
        raise InvalidInput(f"{len(found)} instances are named {ref!r} (ids {ids}); use an id")
    return found[0]


def host(tx: Transaction, ref: str) -> Host:
    number = _as_id(ref)
    if number is not None:
        return tx.hosts.get(HostId(number))
    return tx.hosts.get_by_name(ref.strip())


def user(tx: Transaction, ref: str) -> User:
    number = _as_id(ref)
    if number is not None:
        return tx.users.get(UserId(number))
    return tx.users.get_by_name(ref.strip())


def network(tx: Transaction, ref: str) -> Network:
    number = _as_id(ref)
    if number is not None:
        return tx.networks.get(NetworkId(number))
    for net in tx.networks.list():
        if net.name == ref.strip():
            return net
    raise NotFound(f"no network is named {ref!r}")
