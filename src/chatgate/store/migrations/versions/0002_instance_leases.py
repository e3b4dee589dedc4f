"""Instance leases: what each process's row says about it, to prove it gone.

``base`` is ``CHATGATE_INSTANCE_ID`` (``configured``) or ``<hostname>:<port>``;
``host`` and ``pid`` name the process on its host. Rows written before this
revision have none of them: their runs are ended when their lease expires.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ("base", "configured", "host", "pid")


def upgrade() -> None:
    """Add the columns that describe a process."""
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("base", sa.String(255)))
        batch.add_column(sa.Column("configured", sa.Boolean()))
        batch.add_column(sa.Column("host", sa.String(255)))
        batch.add_column(sa.Column("pid", sa.Integer()))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("instances") as batch:
        for column in _COLUMNS:
            batch.drop_column(column)
