"""An index of the running runs by owner: the per-user run limit's count reads only the user's.

With a broker shared by several instances, every user message asks how many
of its user's runs the other instances are running. Without this index that
count reads every running run of every user (and, on PostgreSQL, every row
version of them not yet vacuumed); with it, the user's running runs only. A
partial index: finished runs, nearly all rows, are not in it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    """Create the partial index."""
    op.create_index(
        "ix_runs_running_owner",
        "runs",
        ["owner"],
        postgresql_where=_RUNNING,
        sqlite_where=_RUNNING,
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_runs_running_owner", table_name="runs")
