"""The SQL schema as SQLAlchemy Core tables: the one place its shape is written for queries.

The schema itself is created by the Alembic migrations in ``migrations/versions`` (never by
``create_all`` at start-up); ``tests/storage`` checks that the migrated database matches these
tables. Every constraint has a fixed name because ``errors.py`` reads constraint names out of
the database's error to say which uniqueness rule was broken.

Design points (docs/adr/0002-state-store.md):

* Ids are assigned by the database and never reused (``sqlite_autoincrement``; sequences on
  PostgreSQL; InnoDB's persistent AUTO_INCREMENT on MariaDB). Network ids are chosen by the admin.
* ``instances.name_key`` holds the name only when the instance asked for a unique name; its
  UNIQUE index makes ``unique_name`` race-free (NULLs never collide).
* ``instances.host_id`` has no foreign key: a host may be forgotten while its instances still
  remember where they ran. ``instance_events.instance_id`` has none either: the history of an
  instance is kept after the instance is removed.
* ``ix_instances_usage`` covers the grouped usage query (``usage_by_host``), so the scheduler's
  snapshot reads one index, not the instance rows with their JSON.
* ``ix_instances_group`` finds a user's group (``membership.members``) without reading the
  user's other instances.
* Names compare by code point on every database (see ``coltypes.py``).
* ``addresses`` (the DHCP/DNS hook's allocations): the primary key (network, ip) makes two
  allocations of one address impossible; rows go with their instance (``ON DELETE CASCADE``, in
  the unit that removes it), and a network with addresses on it cannot be removed.
* ``key_pairs`` go with their user, ``key_pair_tags`` with their key pair (``ON DELETE
  CASCADE``); ``image_tags`` are by image name, as images are files of the image store.
* ``volumes`` and ``snapshots`` hold back their user (``RESTRICT``: their files are in the
  store); their tags go with them. A volume names its instance without a foreign key (the
  volume service settles the attachments of a removed instance); ``uq_volumes_attachment``
  makes one volume per attachment point of an instance race-free (NULLs never collide).
* ``security_groups`` go with their user, their rules and tags with them (``ON DELETE
  CASCADE``); a rule's ``rule_key`` (``Rule.key`` as text) makes a duplicate rule race-free,
  and a rule naming a group (``peer_id``) goes with that group too.
"""

from __future__ import annotations

import sqlalchemy as sa

from tashi.domain import keypairs, secgroups, tags
from tashi.domain import volumes as vol
from tashi.storage.contract import (
    ACCESS_KEY_MAX,
    ENDPOINT_MAX,
    EVENT_KIND_MAX,
    KEY_PAIR_ID_MAX,
    SEALED_SECRET_MAX,
    SECRET_MAX,
)
from tashi.storage.secgroups import PROTOCOL_MAX, RULE_KEY_MAX
from tashi.storage.sql.coltypes import MYSQL_TABLE_ARGS, UtcDateTime, name_type

NAME = 255

#: Primary keys get predictable names too (``pk_<table>``); the rest are named where declared.
metadata = sa.MetaData(naming_convention={"pk": "pk_%(table_name)s"})


def _tag_table(
    name: str, column: str, kind: sa.types.TypeEngine[str], owner: tuple[str, str] | None = None
) -> sa.Table:
    """A resource kind's tags (``domain/tags.py``): the resource's ``column`` and the tag's key
    make the row; ``owner`` (the resource's id column, the key's name) makes them go with their
    resource (``ON DELETE CASCADE``)."""
    parts: list[sa.schema.SchemaItem] = [
        sa.Column(column, kind, primary_key=True),
        sa.Column("tag_key", name_type(tags.KEY_MAX), primary_key=True),
        sa.Column("tag_value", sa.String(tags.VALUE_MAX), nullable=False),
    ]
    if owner is not None:
        parts.append(
            sa.ForeignKeyConstraint([column], [owner[0]], name=owner[1], ondelete="CASCADE")
        )
    return sa.Table(name, metadata, *parts, **MYSQL_TABLE_ARGS)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", name_type(NAME), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("name", name="uq_users_name"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_ARGS,
)

networks = sa.Table(
    "networks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", name_type(NAME), nullable=False),
    sa.UniqueConstraint("name", name="uq_networks_name"),
    **MYSQL_TABLE_ARGS,
)

hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", name_type(NAME), nullable=False),
    sa.Column("up", sa.Boolean, nullable=False),
    sa.Column("decayed", sa.Boolean, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("memory", sa.Integer, nullable=False),
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("cpu_speed", sa.Integer, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("last_heartbeat", UtcDateTime, nullable=True),
    sa.Column("load", sa.Float, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("lease_expires", UtcDateTime, nullable=True),
    sa.UniqueConstraint("name", name="uq_hosts_name"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_ARGS,
)

host_reservations = sa.Table(
    "host_reservations",
    metadata,
    sa.Column("host_id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.ForeignKeyConstraint(
        ["host_id"], ["hosts.id"], name="fk_host_reservations_host", ondelete="CASCADE"
    ),
    sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name="fk_host_reservations_user", ondelete="CASCADE"
    ),
    sa.Index("ix_host_reservations_user", "user_id"),
    **MYSQL_TABLE_ARGS,
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", name_type(NAME), nullable=False),
    sa.Column("name_key", name_type(NAME), nullable=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("host_id", sa.Integer, nullable=True),
    sa.Column("vm_id", sa.Integer, nullable=True),
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("memory", sa.Integer, nullable=False),
    sa.Column("cpu_share", sa.Integer, nullable=False),
    sa.Column("disks", sa.JSON, nullable=False),
    sa.Column("hints", sa.JSON, nullable=False),
    sa.Column("group_name", sa.String(NAME), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("state_since", UtcDateTime, nullable=False),
    sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name="fk_instances_user", ondelete="RESTRICT"
    ),
    sa.Index("uq_instances_name_key", "name_key", unique=True),
    sa.Index("ix_instances_state", "state", "id"),
    sa.Index("ix_instances_user", "user_id", "id"),
    sa.Index("ix_instances_host", "host_id", "id"),
    sa.Index("ix_instances_name", "name", "id"),
    sa.Index("ix_instances_usage", "state", "host_id", "memory", "cores"),
    sa.Index("ix_instances_group", "user_id", "group_name", "id"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_ARGS,
)

nics = sa.Table(
    "nics",
    metadata,
    sa.Column("instance_id", sa.Integer, primary_key=True),
    sa.Column("idx", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("network_id", sa.Integer, nullable=False),
    sa.Column("mac", sa.String(17), nullable=False),
    sa.Column("ip", sa.String(45), nullable=True),
    sa.ForeignKeyConstraint(
        ["instance_id"], ["instances.id"], name="fk_nics_instance", ondelete="CASCADE"
    ),
    sa.ForeignKeyConstraint(
        ["network_id"], ["networks.id"], name="fk_nics_network", ondelete="RESTRICT"
    ),
    sa.UniqueConstraint("mac", name="uq_nics_mac"),
    sa.UniqueConstraint("network_id", "ip", name="uq_nics_network_ip"),
    **MYSQL_TABLE_ARGS,
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("token_hash", sa.String(128), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("expires", UtcDateTime, nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_tokens_user", ondelete="CASCADE"),
    sa.Index("ix_tokens_user", "user_id"),
    sa.Index("ix_tokens_expires", "expires"),
    **MYSQL_TABLE_ARGS,
)

access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("id", sa.String(ACCESS_KEY_MAX), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("sealed_secret", sa.String(SEALED_SECRET_MAX), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name="fk_access_keys_user", ondelete="CASCADE"
    ),
    sa.Index("ix_access_keys_user", "user_id"),
    **MYSQL_TABLE_ARGS,
)

key_pairs = sa.Table(
    "key_pairs",
    metadata,
    sa.Column("id", sa.String(KEY_PAIR_ID_MAX), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("name", name_type(keypairs.NAME_MAX), nullable=False),
    sa.Column("key_type", sa.String(16), nullable=False),
    sa.Column("fingerprint", sa.String(keypairs.FINGERPRINT_MAX), nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name="fk_key_pairs_user", ondelete="CASCADE"
    ),
    sa.UniqueConstraint("user_id", "name", name="uq_key_pairs_user_name"),
    **MYSQL_TABLE_ARGS,
)

key_pair_tags = _tag_table(
    "key_pair_tags",
    "key_pair_id",
    sa.String(KEY_PAIR_ID_MAX),
    owner=("key_pairs.id", "fk_key_pair_tags_key_pair"),
)

image_tags = _tag_table("image_tags", "image", name_type(NAME))

volumes = sa.Table(
    "volumes",
    metadata,
    sa.Column("id", sa.String(vol.ID_MAX), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("size_gib", sa.Integer, nullable=False),
    sa.Column("zone", sa.String(vol.ZONE_MAX), nullable=False),
    sa.Column("volume_type", sa.String(vol.TYPE_MAX), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("snapshot_id", sa.String(vol.ID_MAX), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("instance_id", sa.Integer, nullable=True),
    sa.Column("device", sa.String(vol.DEVICE_MAX), nullable=True),
    sa.Column("device_index", sa.SmallInteger, nullable=True),
    sa.Column("attached_at", UtcDateTime, nullable=True),
    sa.Column("delete_on_termination", sa.Boolean, nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_volumes_user", ondelete="RESTRICT"),
    sa.Index("ix_volumes_user", "user_id", "id"),
    sa.Index("uq_volumes_attachment", "instance_id", "device_index", unique=True),
    **MYSQL_TABLE_ARGS,
)

volume_tags = _tag_table(
    "volume_tags", "volume_id", sa.String(vol.ID_MAX), owner=("volumes.id", "fk_volume_tags_volume")
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", sa.String(vol.ID_MAX), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("volume_id", sa.String(vol.ID_MAX), nullable=False),
    sa.Column("volume_size_gib", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("description", sa.String(vol.DESCRIPTION_MAX), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name="fk_snapshots_user", ondelete="RESTRICT"
    ),
    sa.Index("ix_snapshots_user", "user_id", "id"),
    sa.Index("ix_snapshots_volume", "volume_id"),
    **MYSQL_TABLE_ARGS,
)

snapshot_tags = _tag_table(
    "snapshot_tags",
    "snapshot_id",
    sa.String(vol.ID_MAX),
    owner=("snapshots.id", "fk_snapshot_tags_snapshot"),
)

node_links = sa.Table(
    "node_links",
    metadata,
    sa.Column("host_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("endpoint", sa.String(ENDPOINT_MAX), nullable=False),
    sa.Column("secret", sa.String(SECRET_MAX), nullable=False),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("registered_at", UtcDateTime, nullable=False),
    sa.Column("peer_secret", sa.String(SECRET_MAX), nullable=True),
    sa.Column("witnesses", sa.Text, nullable=True),  # domain.witnesses.WitnessSets as JSON
    sa.ForeignKeyConstraint(
        ["host_id"], ["hosts.id"], name="fk_node_links_host", ondelete="CASCADE"
    ),
    sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name="fk_node_links_user", ondelete="CASCADE"
    ),
    sa.Index("ix_node_links_user", "user_id"),
    **MYSQL_TABLE_ARGS,
)

instance_events = sa.Table(
    "instance_events",
    metadata,
    # 64-bit: the busiest table, and its ids are never reused (SQLite's AUTOINCREMENT needs
    # its INTEGER, which is 64-bit there anyway).
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("kind", sa.String(EVENT_KIND_MAX), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_instance_events_instance", "instance_id", "id"),
    sa.Index("ix_instance_events_at", "at"),  # purge_before
    sqlite_autoincrement=True,
    **MYSQL_TABLE_ARGS,
)

addresses = sa.Table(
    "addresses",
    metadata,
    sa.Column("network_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ip", sa.String(45), primary_key=True),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("nic_index", sa.SmallInteger, nullable=False),
    sa.ForeignKeyConstraint(
        ["instance_id"], ["instances.id"], name="fk_addresses_instance", ondelete="CASCADE"
    ),
    sa.ForeignKeyConstraint(
        ["network_id"], ["networks.id"], name="fk_addresses_network", ondelete="RESTRICT"
    ),
    sa.UniqueConstraint("instance_id", "nic_index", name="uq_addresses_nic"),
    **MYSQL_TABLE_ARGS,
)

security_groups = sa.Table(
    "security_groups",
    metadata,
    sa.Column("id", sa.String(secgroups.ID_MAX), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("name", name_type(secgroups.NAME_MAX), nullable=False),
    sa.Column("description", sa.String(secgroups.DESCRIPTION_MAX), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name="fk_security_groups_user", ondelete="CASCADE"
    ),
    sa.UniqueConstraint("user_id", "name", name="uq_security_groups_user_name"),
    **MYSQL_TABLE_ARGS,
)

security_group_rules = sa.Table(
    "security_group_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.String(secgroups.ID_MAX), nullable=False),
    sa.Column("rule_key", name_type(RULE_KEY_MAX), nullable=False),
    sa.Column("protocol", sa.String(PROTOCOL_MAX), nullable=False),
    sa.Column("from_port", sa.Integer, nullable=False),
    sa.Column("to_port", sa.Integer, nullable=False),
    sa.Column("cidr", sa.String(secgroups.CIDR_MAX), nullable=False),
    sa.Column("peer_id", sa.String(secgroups.ID_MAX), nullable=True),
    sa.Column("description", sa.String(secgroups.DESCRIPTION_MAX), nullable=False),
    sa.Column("egress", sa.Boolean, nullable=False, server_default=sa.false()),  # 0009
    sa.ForeignKeyConstraint(
        ["group_id"],
        ["security_groups.id"],
        name="fk_security_group_rules_group",
        ondelete="CASCADE",
    ),
    sa.ForeignKeyConstraint(
        ["peer_id"],
        ["security_groups.id"],
        name="fk_security_group_rules_peer",
        ondelete="CASCADE",
    ),
    sa.UniqueConstraint("group_id", "rule_key", name="uq_security_group_rules_key"),
    sa.Index("ix_security_group_rules_peer", "peer_id"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE_ARGS,
)

security_group_tags = _tag_table(
    "security_group_tags",
    "group_id",
    sa.String(secgroups.ID_MAX),
    owner=("security_groups.id", "fk_security_group_tags_group"),
)

#: Tables in an order that deletes cleanly (children first).
DELETE_ORDER: tuple[sa.Table, ...] = tuple(reversed(metadata.sorted_tables))
