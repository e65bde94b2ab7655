"""The initial schema: users, networks, hosts and their reservations, instances, NICs, tokens.

Written by hand to match ``tables.py`` as it was at this revision (the migration tests compare
the migrated database with ``tables.py``). Once released, never edit it: add a revision.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tashi.storage.sql.coltypes import MYSQL_TABLE_ARGS, UtcDateTime, name_type

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

NAME = 255


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", name_type(NAME), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "networks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", name_type(NAME), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_networks"),
        sa.UniqueConstraint("name", name="uq_networks_name"),
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "hosts",
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
        sa.PrimaryKeyConstraint("id", name="pk_hosts"),
        sa.UniqueConstraint("name", name="uq_hosts_name"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "host_reservations",
        sa.Column("host_id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("host_id", "user_id", name="pk_host_reservations"),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name="fk_host_reservations_host", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_host_reservations_user", ondelete="CASCADE"
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_host_reservations_user", "host_reservations", ["user_id"])
    op.create_table(
        "instances",
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
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_instances_user", ondelete="RESTRICT"
        ),
        sqlite_autoincrement=True,
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("uq_instances_name_key", "instances", ["name_key"], unique=True)
    op.create_index("ix_instances_state", "instances", ["state", "id"])
    op.create_index("ix_instances_user", "instances", ["user_id", "id"])
    op.create_index("ix_instances_host", "instances", ["host_id", "id"])
    op.create_index("ix_instances_name", "instances", ["name", "id"])
    op.create_table(
        "nics",
        sa.Column("instance_id", sa.Integer, nullable=False),
        sa.Column("idx", sa.SmallInteger, nullable=False, autoincrement=False),
        sa.Column("network_id", sa.Integer, nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.PrimaryKeyConstraint("instance_id", "idx", name="pk_nics"),
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
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("expires", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_tokens_user", ondelete="CASCADE"
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_tokens_user", "tokens", ["user_id"])
    op.create_index("ix_tokens_expires", "tokens", ["expires"])


def downgrade() -> None:
    for table in ("tokens", "nics", "instances", "host_reservations", "hosts", "networks"):
        op.drop_table(table)
    op.drop_table("users")
