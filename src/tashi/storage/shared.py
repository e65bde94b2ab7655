"""What every implementation of the store contract (``contract.py``) runs alike, so that the
memory store and the SQL store keep its rules the same way: the bounds checked before a write
(``bounded`` and the ``checked_*`` of each record, against ``contract``'s limits), the record a
new instance is (``new_instance``), a history message cut to what is kept
(``event_message``), a listing's limit checked (``check_limit``), the lowest free address of a
range (``lowest_free_address``), and a large result walked in pages (``iterate_all``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from tashi.domain import tags as tag_rules
from tashi.domain import volumes as volume_rules
from tashi.domain.errors import InvalidInput
from tashi.domain.ids import InstanceId, UserId
from tashi.domain.keypairs import FINGERPRINT_MAX, NAME_MAX, PUBLIC_KEY_MAX, KeyPair
from tashi.domain.models import Instance, InstanceSpec
from tashi.domain.states import InstanceState
from tashi.domain.volumes import Snapshot, Volume
from tashi.storage.contract import EVENT_MESSAGE_MAX, KEY_PAIR_ID_MAX, InstanceFilter, Store

_EVERYTHING = InstanceFilter()


def new_instance(
    instance_id: InstanceId, owner: UserId, spec: InstanceSpec, now: datetime
) -> Instance:
    """The record ``InstanceRepository.add`` returns: ``spec`` as a Pending instance."""
    return Instance(
        id=instance_id,
        name=spec.name,
        user_id=owner,
        state=InstanceState.Pending,
        cores=spec.cores,
        memory=spec.memory,
        disks=spec.disks,
        nics=spec.nics,
        cpu_share=spec.cpu_share,
        hints=dict(spec.hints),
        group_name=spec.group_name,
        created_at=now,
        state_since=now,
    )


def bounded(what: str, value: str, limit: int) -> str:
    """``value`` if it has 1 to ``limit`` characters, else ``InvalidInput`` naming ``what``
    (never the value: it may be a secret). Both stores call it before writing, so a value the
    SQL column could not hold is refused alike on every backend."""
    if not value or len(value) > limit:
        raise InvalidInput(f"{what} must have 1 to {limit} characters, not {len(value)}")
    return value


def checked_key_pair(pair: KeyPair) -> None:
    """The bounds both stores check before they write a key pair."""
    bounded("a key pair id", pair.id, KEY_PAIR_ID_MAX)
    bounded("a key pair's name", pair.name, NAME_MAX)
    bounded("a public key", pair.public_key, PUBLIC_KEY_MAX)
    bounded("a fingerprint", pair.fingerprint, FINGERPRINT_MAX)


def checked_tags(tags: Mapping[str, str]) -> None:
    """The bounds both stores check before they write tags."""
    limit = tag_rules.VALUE_MAX
    for key, value in tags.items():
        bounded("a tag's key", key, tag_rules.KEY_MAX)
        if len(value) > limit:
            raise InvalidInput(f"a tag's value must have at most {limit} characters")


def checked_volume(volume: Volume) -> None:
    """The bounds and rules both stores check before they write a volume."""
    bounded("a volume id", volume.id, volume_rules.ID_MAX)
    bounded("a zone", volume.zone, volume_rules.ZONE_MAX)
    bounded("a volume type", volume.volume_type, volume_rules.TYPE_MAX)
    if volume.snapshot_id is not None:
        bounded("a snapshot id", volume.snapshot_id, volume_rules.ID_MAX)
    attached = volume.state in volume_rules.ATTACHED
    if attached != (volume.attachment is not None):
        raise InvalidInput(f"a {volume.state.value} volume has an attachment exactly when attached")
    if volume.attachment is not None:
        bounded("a device", volume.attachment.device, volume_rules.DEVICE_MAX)
        volume_rules.device_index(volume.attachment.device)


def checked_snapshot(snapshot: Snapshot) -> None:
    """The bounds both stores check before they write a snapshot."""
    bounded("a snapshot id", snapshot.id, volume_rules.ID_MAX)
    bounded("a volume id", snapshot.volume_id, volume_rules.ID_MAX)
    if len(snapshot.description) > volume_rules.DESCRIPTION_MAX:
        raise InvalidInput(f"a description has at most {volume_rules.DESCRIPTION_MAX} characters")


def event_message(message: str) -> str:
    """``message`` as the history keeps it: cut to ``EVENT_MESSAGE_MAX`` characters."""
    if len(message) <= EVENT_MESSAGE_MAX:
        return message
    return message[: EVENT_MESSAGE_MAX - 1] + "…"


def check_limit(limit: int) -> int:
    """``limit`` if it is not negative, else ``InvalidInput`` (SQLite reads -1 as "no limit")."""
    if limit < 0:
        raise InvalidInput(f"limit must not be negative, not {limit}")
    return limit


def iterate_all(
    store: Store, where: InstanceFilter = _EVERYTHING, page: int = 1000
) -> Iterator[Instance]:
    """Walk a large result in pages of ``page`` ids (each page its own read transaction)."""
    after = where.after_id
    while True:
        with store.transaction(write=False) as tx:
            batch = tx.instances.find(
                InstanceFilter(
                    ids=where.ids,
                    name=where.name,
                    name_prefix=where.name_prefix,
                    user_id=where.user_id,
                    states=where.states,
                    host_id=where.host_id,
                    after_id=after,
                    limit=page,
                )
            )
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1].id


def lowest_free_address(first: str, last: str, taken: Iterable[str | None]) -> str | None:
    """The lowest IPv4 address from ``first`` to ``last`` (inclusive) not in ``taken``, or
    ``None`` when there is none (``InvalidInput`` for a range that is not two addresses in
    order). Shared by every ``AddressRepository`` so that all pick the same address."""
    try:
        low, high = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
    except ValueError as exc:
        raise InvalidInput(f"{first}-{last} is not a range of IPv4 addresses") from exc
    if low > high:
        raise InvalidInput(f"{first}-{last} is not a range: {first} is above {last}")
    used = set()
    for text in taken:
        if text:
            try:
                used.add(int(ipaddress.IPv4Address(text)))
            except ValueError:
                continue  # an IPv6 or odd address on a NIC is simply not in an IPv4 range
    for value in range(low, high + 1):
        if value not in used:
            return str(ipaddress.IPv4Address(value))
    return None


def last_nic(instance: Instance, mac: str) -> int | None:
    """The index of the instance's NIC ``mac`` (``None``: it has none), which must be its last
    (``InvalidInput``): only the last NIC is removed, so the others keep their indices."""
    macs = [n.mac.lower() for n in instance.nics]
    if mac.lower() not in macs:
        return None
    index = macs.index(mac.lower())
    if index != len(macs) - 1:
        raise InvalidInput(f"NIC {mac} is not the last of instance {instance.id}")
    return index
