"""EC2 key pairs and tags (issue 16): ``key_pairs`` (users' SSH public keys, a name unique per
user), ``key_pair_tags`` (going with their key pair) and ``image_tags`` (by image name: images
are files of the image store). An instance's tags are its hints, in ``instances``.

A key pair goes with its user, its tags with it (``ON DELETE CASCADE``). Written by hand,
sizes written out.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tashi.storage.sql.coltypes import MYSQL_TABLE_ARGS, UtcDateTime, name_type

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "key_pairs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("name", name_type(255), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(95), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_key_pairs"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_key_pairs_user", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("user_id", "name", name="uq_key_pairs_user_name"),
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "key_pair_tags",
        sa.Column("key_pair_id", sa.String(32), nullable=False),
        sa.Column("tag_key", name_type(128), nullable=False),
        sa.Column("tag_value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("key_pair_id", "tag_key", name="pk_key_pair_tags"),
        sa.ForeignKeyConstraint(
            ["key_pair_id"],
            ["key_pairs.id"],
            name="fk_key_pair_tags_key_pair",
            ondelete="CASCADE",
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "image_tags",
        sa.Column("image", name_type(255), nullable=False),
        sa.Column("tag_key", name_type(128), nullable=False),
        sa.Column("tag_value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("image", "tag_key", name="pk_image_tags"),
        **MYSQL_TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("image_tags")
    op.drop_table("key_pair_tags")
    op.drop_table("key_pairs")
