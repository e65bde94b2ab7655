"""The DHCP/DNS hook's address allocations: ``addresses``.

One row per allocated IPv4 address: (network, ip) is the primary key, so no address is handed out
twice on a network, whoever asks and however often the scheduler restarts; (instance, NIC index)
is unique, so a NIC holds one. Rows go with their instance (``ON DELETE CASCADE``); a network
with addresses cannot be removed (``RESTRICT``).

Written by hand to match ``tables.py`` at this revision (sizes written out, as in 0002).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tashi.storage.sql.coltypes import MYSQL_TABLE_ARGS

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "addresses",
        sa.Column("network_id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("instance_id", sa.Integer, nullable=False),
        sa.Column("nic_index", sa.SmallInteger, nullable=False),
        sa.PrimaryKeyConstraint("network_id", "ip", name="pk_addresses"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name="fk_addresses_instance", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name="fk_addresses_network", ondelete="RESTRICT"
        ),
        sa.UniqueConstraint("instance_id", "nic_index", name="uq_addresses_nic"),
        **MYSQL_TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("addresses")
