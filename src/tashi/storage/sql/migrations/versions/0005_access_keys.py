"""EC2 access keys (issue 16): ``access_keys``, a user's keys for AWS Signature Version 4.

The secret is stored sealed (``clustermanager/accounts/accesskeys.py``), never in clear. A key
goes with its user (``ON DELETE CASCADE``). Written by hand, sizes written out.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tashi.storage.sql.coltypes import MYSQL_TABLE_ARGS, UtcDateTime

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("sealed_secret", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_access_keys_user", ondelete="CASCADE"
        ),
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_access_keys_user", "access_keys", ["user_id"])


def downgrade() -> None:
    # The table takes its index with it (MariaDB refuses to drop the index alone: its foreign
    # key needs it).
    op.drop_table("access_keys")
