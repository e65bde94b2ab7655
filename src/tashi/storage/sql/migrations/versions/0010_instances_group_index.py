"""The index that finds a user's group (issue 25): ``ix_instances_group`` on ``instances``
(user, group name, id), so placing a group reads its members, not every instance its owner has.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_instances_group", "instances", ["user_id", "group_name", "id"])


def downgrade() -> None:
    op.drop_index("ix_instances_group", table_name="instances")
