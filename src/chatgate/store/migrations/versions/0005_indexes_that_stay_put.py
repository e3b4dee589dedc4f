"""Indexes that a chat turn does not move: threads by owner, and no index of finished runs.

Every message raises its thread's ``updated_at``, and every run ends by
changing its ``status``. An index holding either column moved an entry on each
of those writes, on a page picked by the owner or the instance: a batch of a
hundred turns rewrote a page per turn of ``ix_threads_owner_updated`` alone,
and on PostgreSQL an indexed column changed means no heap-only update.

- ``ix_threads_owner_updated`` becomes ``ix_threads_owner``: listing a user's
  threads sorts them anyway (by ``updated_at``, then by their latest message,
  a subquery per thread), so the index serves only the owner's filter.
- ``ix_runs_status_instance`` goes: the claim of orphaned runs reads running
  runs only, which ``ix_runs_running_owner`` (0004) holds all of; finished
  runs, nearly every row, are in no index but the primary key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Replace the indexes."""
    op.create_index("ix_threads_owner", "threads", ["owner"])
    op.drop_index("ix_threads_owner_updated", table_name="threads")
    op.drop_index("ix_runs_status_instance", table_name="runs")


def downgrade() -> None:
    """Bring the earlier ones back."""
    op.create_index("ix_runs_status_instance", "runs", ["status", "instance_id"])
    op.create_index("ix_threads_owner_updated", "threads", ["owner", "updated_at"])
    op.drop_index("ix_threads_owner", table_name="threads")
