"""Witnessed host leases (ADR 0010): each node link's peer secret and witness sets.

* ``node_links.peer_secret``: the key of the tokens other hosts present to this host's node
  manager when it is their witness;
* ``node_links.witnesses``: the witness sets the host may be using (JSON of
  ``domain.witnesses.WitnessSets``).

Both nullable: a link written before this revision has neither, and such a host is left alone
by HA until its node manager reports again. Written by hand, sizes written out; the downgrade
drops the columns with ``ALTER TABLE ... DROP COLUMN``, as 0002's does.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("node_links", sa.Column("peer_secret", sa.String(255), nullable=True))
    op.add_column("node_links", sa.Column("witnesses", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("node_links", "witnesses")
    op.drop_column("node_links", "peer_secret")
