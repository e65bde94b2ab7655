"""Outbound security-group rules (issue 16): ``security_group_rules.egress`` tells an outbound
rule (its ``cidr`` or ``peer_id`` is where traffic goes) from an inbound one, and every group
that exists gets the outbound rule a new group has, as on AWS: all traffic to 0.0.0.0/0 (so what
its members could send before, they still can).

An outbound rule's ``rule_key`` ends in ``|egress``, so an inbound and an outbound rule of the
same parts are two rules under the one unique constraint. Written by hand.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_DEFAULT_KEY = "-1|-1|-1|0.0.0.0/0||egress"  # storage.secgroups.rule_key(DEFAULT_EGRESS)


def upgrade() -> None:
    op.add_column(
        "security_group_rules",
        sa.Column("egress", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    groups = sa.table("security_groups", sa.column("id", sa.String))
    rules = sa.table(
        "security_group_rules",
        *(sa.column(c, sa.String) for c in ("group_id", "rule_key", "protocol", "cidr")),
        *(sa.column(c, sa.String) for c in ("peer_id", "description")),
        sa.column("from_port", sa.Integer),
        sa.column("to_port", sa.Integer),
        sa.column("egress", sa.Boolean),
    )
    every = sa.select(
        groups.c.id,
        sa.literal(_DEFAULT_KEY),
        sa.literal("-1"),
        sa.literal(-1),
        sa.literal(-1),
        sa.literal("0.0.0.0/0"),
        sa.literal(""),
        sa.true(),
    )
    columns = ["group_id", "rule_key", "protocol", "from_port", "to_port", "cidr", "description"]
    op.execute(sa.insert(rules).from_select([*columns, "egress"], every))


def downgrade() -> None:
    rules = sa.table("security_group_rules", sa.column("egress", sa.Boolean))
    op.execute(sa.delete(rules).where(rules.c.egress == sa.true()))
    with op.batch_alter_table("security_group_rules") as batch:
        batch.drop_column("egress")
