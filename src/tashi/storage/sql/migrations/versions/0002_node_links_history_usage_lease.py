"""Node links, the instance history, the usage index and host leases.

* ``node_links``: how the cluster manager reaches each host's node manager (one row per host,
  dropped with the host or the node's user);
* ``instance_events``: the instance history, deliberately without a foreign key to
  ``instances`` (it outlives the instance), ids never reused;
* ``ix_instances_usage``: a covering index for the per-host usage sums of the scheduler;
* ``hosts.lease_expires``: the HA lease of a host's node manager.

Written by hand to match ``tables.py`` at this revision. Column sizes are written out rather
than taken from ``contract.py``: a released revision must not change when a constant does.
The downgrade drops ``hosts.lease_expires`` with a plain ``ALTER TABLE ... DROP COLUMN``
(SQLite >= 3.35), never by rebuilding ``hosts``: with foreign keys on, dropping the old table
would cascade and delete every host reservation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tashi.storage.sql.coltypes import MYSQL_TABLE_ARGS, UtcDateTime

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("lease_expires", UtcDateTime, nullable=True))
    op.create_index("ix_instances_usage", "instances", ["state", "host_id", "memory", "cores"])
    op.create_table(
        "node_links",
        sa.Column("host_id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("secret", sa.String(255), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("registered_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("host_id", name="pk_node_links"),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name="fk_node_links_host", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_node_links_user", ondelete="CASCADE"
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_node_links_user", "node_links", ["user_id"])
    op.create_table(
        "instance_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("instance_id", sa.Integer, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instance_events"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_instance_events_instance", "instance_events", ["instance_id", "id"])
    op.create_index("ix_instance_events_at", "instance_events", ["at"])


def downgrade() -> None:
    op.drop_table("instance_events")
    op.drop_table("node_links")
    op.drop_index("ix_instances_usage", table_name="instances")
    op.drop_column("hosts", "lease_expires")
