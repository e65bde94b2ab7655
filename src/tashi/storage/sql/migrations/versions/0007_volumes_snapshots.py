"""EC2 volumes and snapshots (issue 16): ``volumes`` (a user's persistent disks, with where each
is attached), ``snapshots`` (copies of volumes), and the tags of both.

Volumes and snapshots hold back their user (``ON DELETE RESTRICT``: their files are in the image
store); tags go with their volume or snapshot (``ON DELETE CASCADE``). A volume names the
instance it is attached to without a foreign key; ``uq_volumes_attachment`` (instance, attachment
point) keeps two volumes from one point. Written by hand, sizes written out.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tashi.storage.sql.coltypes import MYSQL_TABLE_ARGS, UtcDateTime, name_type

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("size_gib", sa.Integer, nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("volume_type", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("snapshot_id", sa.String(32), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("instance_id", sa.Integer, nullable=True),
        sa.Column("device", sa.String(16), nullable=True),
        sa.Column("device_index", sa.SmallInteger, nullable=True),
        sa.Column("attached_at", UtcDateTime, nullable=True),
        sa.Column("delete_on_termination", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_volumes"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_volumes_user", ondelete="RESTRICT"
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_volumes_user", "volumes", ["user_id", "id"])
    op.create_index(
        "uq_volumes_attachment", "volumes", ["instance_id", "device_index"], unique=True
    )
    op.create_table(
        "volume_tags",
        sa.Column("volume_id", sa.String(32), nullable=False),
        sa.Column("tag_key", name_type(128), nullable=False),
        sa.Column("tag_value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("volume_id", "tag_key", name="pk_volume_tags"),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name="fk_volume_tags_volume", ondelete="CASCADE"
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("volume_id", sa.String(32), nullable=False),
        sa.Column("volume_size_gib", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_snapshots_user", ondelete="RESTRICT"
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_snapshots_user", "snapshots", ["user_id", "id"])
    op.create_index("ix_snapshots_volume", "snapshots", ["volume_id"])
    op.create_table(
        "snapshot_tags",
        sa.Column("snapshot_id", sa.String(32), nullable=False),
        sa.Column("tag_key", name_type(128), nullable=False),
        sa.Column("tag_value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("snapshot_id", "tag_key", name="pk_snapshot_tags"),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name="fk_snapshot_tags_snapshot",
            ondelete="CASCADE",
        ),
        **MYSQL_TABLE_ARGS,
    )


def downgrade() -> None:
    # Tables take their indexes with them (MariaDB refuses to drop an index a foreign key needs).
    op.drop_table("snapshot_tags")
    op.drop_table("snapshots")
    op.drop_table("volume_tags")
    op.drop_table("volumes")
