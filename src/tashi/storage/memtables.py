"""The tables of the in-memory store (``memory.py``), shared by its repositories.

A write transaction copies each dict named in ``DICTS`` (their values are immutable records), so
a failed block leaves the store's own tables untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from tashi.domain.errors import InvalidInput
from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.keypairs import KeyPair
from tashi.domain.models import AccessKey, Host, Instance, InstanceEvent, Network, NodeLink, User
from tashi.domain.secgroups import Rule, SecurityGroup
from tashi.domain.volumes import Snapshot, Volume
from tashi.storage.contract import Address
from tashi.storage.shared import check_limit


@dataclass
class Tables:
    instances: dict[InstanceId, Instance] = field(default_factory=dict)
    unique_names: dict[InstanceId, str] = field(default_factory=dict)
    hosts: dict[HostId, Host] = field(default_factory=dict)
    networks: dict[NetworkId, Network] = field(default_factory=dict)
    users: dict[UserId, User] = field(default_factory=dict)
    passwords: dict[UserId, str] = field(default_factory=dict)
    tokens: dict[str, tuple[UserId, datetime]] = field(default_factory=dict)
    access_keys: dict[str, tuple[AccessKey, str]] = field(default_factory=dict)
    key_pairs: dict[str, KeyPair] = field(default_factory=dict)
    key_pair_tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (id, key)
    image_tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, key)
    volumes: dict[str, Volume] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    volume_tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (id, key)
    snapshot_tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (id, key)
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)
    #: (group id, ``Rule.key``) -> the rule, in the order they were added
    security_group_rules: dict[tuple[str, tuple[str | int, ...]], Rule] = field(
        default_factory=dict
    )
    security_group_tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (id, key)
    links: dict[HostId, NodeLink] = field(default_factory=dict)
    events: dict[InstanceId, tuple[InstanceEvent, ...]] = field(default_factory=dict)
    addresses: dict[tuple[InstanceId, int], Address] = field(default_factory=dict)
    next_instance: int = 1
    next_host: int = 1
    next_user: int = 1
    next_event: int = 1


#: The ``Tables`` members a write transaction copies (each a dict of immutable values).
DICTS = (
    "instances",
    "unique_names",
    "hosts",
    "networks",
    "users",
    "passwords",
    "tokens",
    "access_keys",
    "key_pairs",
    "key_pair_tags",
    "image_tags",
    "volumes",
    "snapshots",
    "volume_tags",
    "snapshot_tags",
    "security_groups",
    "security_group_rules",
    "security_group_tags",
    "links",
    "events",
    "addresses",
)


def aware(value: datetime) -> None:
    """Timestamps must carry a time zone (the SQL store refuses naive ones the same way)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"timestamp {value.isoformat()} has no time zone")


class HasId(Protocol):
    @property
    def id(self) -> int: ...


Row = TypeVar("Row", bound=HasId)


def page(rows: Iterable[Row], after_id: int | None, limit: int | None) -> list[Row]:
    """``rows`` in id order, keyset-paged as the SQL store does: ids above ``after_id``, at
    most ``limit`` (``check_limit``) of them."""
    found = sorted((r for r in rows if after_id is None or r.id > after_id), key=lambda r: r.id)
    return found if limit is None else found[: check_limit(limit)]
