"""Turn what a user typed (an id or a name) into a record, as the original ``--instance`` did,
and a ``getInstances`` query into the store's filter.

A reference of ASCII digits only is an id; anything else a name. Instance names cannot be all
digits (validation refuses them), so the two never collide. An id beyond what the store keeps
(a signed 64-bit integer) names nothing: not found, like any id no record has. A name shared by
several instances (with ``allowDuplicateNames``) is refused with the ids to choose from.
"""

from __future__ import annotations

from tashi.domain.errors import Forbidden, InvalidInput, NotFound
from tashi.domain.ids import INT_MAX, HostId, InstanceId, NetworkId, UserId
from tashi.domain.models import Host, Instance, Network, Principal, User
from tashi.domain.operations import InstanceQuery
from tashi.domain.states import InstanceState
from tashi.storage.contract import InstanceFilter, Transaction


def _as_id(ref: str, kind: str) -> int | None:
    text = ref.strip()
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() holds, int("²") fails
        return None
    number = int(text)
    if number > INT_MAX:
        raise NotFound(f"{kind} {number} does not exist")
    return number


def instance(tx: Transaction, ref: str) -> Instance:
    number = _as_id(ref, "instance")
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
    number = _as_id(ref, "host")
    if number is not None:
        return tx.hosts.get(HostId(number))
    return tx.hosts.get_by_name(ref.strip())


def user(tx: Transaction, ref: str) -> User:
    number = _as_id(ref, "user")
    if number is not None:
        return tx.users.get(UserId(number))
    return tx.users.get_by_name(ref.strip())


def network(tx: Transaction, ref: str) -> Network:
    number = _as_id(ref, "network")
    if number is not None:
        return tx.networks.get(NetworkId(number))
    for net in tx.networks.list():
        if net.name == ref.strip():
            return net
    raise NotFound(f"no network is named {ref!r}")


def instances(tx: Transaction, caller: Principal, query: InstanceQuery) -> InstanceFilter:
    """A ``getInstances`` query as the store's filter, for ``caller``: a user's own instances
    only (``Forbidden`` for another's)."""
    user_id = user(tx, query.user).id if query.user else None
    if not caller.is_trusted:
        if user_id is not None and user_id != caller.user_id:
            raise Forbidden("a user may only list their own instances")
        user_id = caller.user_id
    return InstanceFilter(
        ids=None if query.ids is None else [InstanceId(i) for i in query.ids],
        user_id=user_id,
        states=_states(query),
        host_id=host(tx, query.host).id if query.host else None,
        name=query.name,
        name_prefix=query.name_prefix,
        after_id=InstanceId(query.after_id) if query.after_id else None,
        limit=query.limit,
    )


def _states(query: InstanceQuery) -> list[InstanceState] | None:
    if query.states is None:
        return [InstanceState.parse(query.state)] if query.state else None
    wanted = [InstanceState.parse(s) for s in query.states]
    return [s for s in wanted if s is InstanceState.parse(query.state)] if query.state else wanted
