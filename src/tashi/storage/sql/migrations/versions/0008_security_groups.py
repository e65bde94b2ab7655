"""EC2 security groups (issue 16): ``security_groups`` (a user's groups, a name unique per
user), ``security_group_rules`` (their inbound rules, each unique in its group by its key, in
the order they were added) and ``security_group_tags``. Which instances are members is on the
instances (their hints), not here.

A group goes with its user, its rules and tags with it, and a rule naming a group (``peer_id``)
with that group (``ON DELETE CASCADE``). Written by hand, sizes written out.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tashi.storage.sql.coltypes import MYSQL_TABLE_ARGS, UtcDateTime, name_type

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "security_groups",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("name", name_type(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_groups"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_security_groups_user", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("user_id", "name", name="uq_security_groups_user_name"),
        **MYSQL_TABLE_ARGS,
    )
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(32), nullable=False),
        sa.Column("rule_key", name_type(96), nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("from_port", sa.Integer, nullable=False),
        sa.Column("to_port", sa.Integer, nullable=False),
        sa.Column("cidr", sa.String(18), nullable=False),
        sa.Column("peer_id", sa.String(32), nullable=True),
        sa.Column("description", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_group_rules"),
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
        sqlite_autoincrement=True,
        **MYSQL_TABLE_ARGS,
    )
    op.create_index("ix_security_group_rules_peer", "security_group_rules", ["peer_id"])
    op.create_table(
        "security_group_tags",
        sa.Column("group_id", sa.String(32), nullable=False),
        sa.Column("tag_key", name_type(128), nullable=False),
        sa.Column("tag_value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "tag_key", name="pk_security_group_tags"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["security_groups.id"],
            name="fk_security_group_tags_group",
            ondelete="CASCADE",
        ),
        **MYSQL_TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("security_group_tags")
    # its index goes with it (MariaDB refuses to drop it first: a foreign key needs it)
    op.drop_table("security_group_rules")
    op.drop_table("security_groups")
