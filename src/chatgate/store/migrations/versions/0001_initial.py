"""The first schema: threads, messages, the event log, runs and instances.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.String(64)
_INSTANCE = sa.String(255)


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the tables and their indexes."""
    op.create_table(
        "threads",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_threads_owner_updated", "threads", ["owner", "updated_at"])
    op.create_table(
        "messages",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", _ID, nullable=False, unique=True),
        sa.Column("thread_id", _ID, sa.ForeignKey("threads.id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("run_id", _ID),
        sa.Column("created_at", _timestamp(), nullable=False),
    )
    op.create_index("ix_messages_thread", "messages", ["thread_id", "seq"])
    op.create_table(
        "events",
        sa.Column("thread_id", _ID, sa.ForeignKey("threads.id"), primary_key=True),
        sa.Column("event_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("run_id", _ID),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", _ID, primary_key=True),
        sa.Column("thread_id", _ID, sa.ForeignKey("threads.id"), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("instance_id", _INSTANCE, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp()),
    )
    op.create_index("ix_runs_status_instance", "runs", ["status", "instance_id"])
    op.create_table(
        "instances",
        sa.Column("instance_id", _INSTANCE, primary_key=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    """Drop everything the upgrade created."""
    for table in ("instances", "runs", "events", "messages", "threads"):
        op.drop_table(table)
