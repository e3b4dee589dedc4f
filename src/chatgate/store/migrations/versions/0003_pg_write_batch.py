"""PostgreSQL: a group-commit batch written by one function call.

``chatgate_write_batch`` does what ``SQLStore._write_plan`` does, statement for
statement and in the same order, inside the database: a batch then costs the
gateway one round trip in autocommit (a statement is its own transaction)
instead of one per table plus ``BEGIN`` and ``COMMIT``. Its arguments are one
array per column; it answers the changed threads' ids and new
``last_event_id``. Each event comes with ``back``, its place counted from the
end of its thread's events in the batch (0 for the last), so that its id is
the thread's new ``last_event_id`` plus ``back``. Messages and events of
threads that do not exist are left out, as ``BatchPlan.place`` leaves them out.
It runs without sequential scans (see the function's ``SET``).

Other databases: nothing to do.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CREATE = """
CREATE OR REPLACE FUNCTION chatgate_write_batch(
    thread_ids text[], thread_owners text[], thread_titles text[],
    thread_created timestamptz[], thread_updated timestamptz[],
    change_ids text[], change_counts bigint[], change_times timestamptz[],
    message_ids text[], message_threads text[], message_roles text[],
    message_contents text[], message_runs text[], message_created timestamptz[],
    run_ids text[], run_threads text[], run_owners text[], run_instances text[],
    run_started timestamptz[],
    ended_ids text[], ended_statuses text[], ended_times timestamptz[],
    event_threads text[], event_backs bigint[], event_types text[], event_runs text[],
    event_payloads json[], event_created timestamptz[],
    OUT changed_ids text[], OUT changed_lasts bigint[]
)
LANGUAGE plpgsql
-- Every table here is reached by its key. A young table's statistics say it
-- is tiny (autovacuum analyzes a database about once a minute), and a plan
-- made then scans the whole table for a batch's few rows, and is kept: each
-- batch then costs in proportion to the table. Without sequential scans the
-- lookups are index lookups whatever the statistics say.
SET enable_seqscan = off
AS $body$
BEGIN
    IF cardinality(thread_ids) > 0 THEN
        INSERT INTO threads (id, owner, title, created_at, updated_at, last_event_id)
        SELECT v.id, v.owner, v.title, v.created_at, v.updated_at, 0
        FROM unnest(thread_ids, thread_owners, thread_titles, thread_created, thread_updated)
            AS v(id, owner, title, created_at, updated_at);
    END IF;
    -- One UPDATE over many rows locks them in whatever order its plan visits
    -- them: lock them in id order first, so that two instances' batches cannot
    -- deadlock. NO KEY UPDATE is the lock the UPDATE takes anyway.
    IF cardinality(change_ids) > 1 THEN
        PERFORM 1 FROM threads AS t WHERE t.id = ANY(change_ids) ORDER BY t.id
            FOR NO KEY UPDATE;
    END IF;
    WITH changed AS (
        UPDATE threads AS t SET last_event_id = t.last_event_id + v.n,
            updated_at = COALESCE(v.ts, t.updated_at)
        FROM unnest(change_ids, change_counts, change_times) AS v(id, n, ts)
        WHERE t.id = v.id
        RETURNING t.id, t.last_event_id
    )
    SELECT coalesce(array_agg(c.id), '{}'), coalesce(array_agg(c.last_event_id), '{}')
        INTO changed_ids, changed_lasts FROM changed AS c;
    -- In submission order: messages.seq orders a thread's messages.
    IF cardinality(message_ids) > 0 THEN
        INSERT INTO messages (id, thread_id, role, content, run_id, created_at)
        SELECT v.id, v.thread_id, v.role, v.content, v.run_id, v.created_at
        FROM unnest(message_ids, message_threads, message_roles, message_contents,
                    message_runs, message_created)
            WITH ORDINALITY AS v(id, thread_id, role, content, run_id, created_at, o)
        WHERE v.thread_id = ANY(changed_ids)
        ORDER BY v.o;
    END IF;
    IF cardinality(run_ids) > 0 THEN
        INSERT INTO runs (run_id, thread_id, owner, instance_id, status, started_at)
        SELECT v.run_id, v.thread_id, v.owner, v.instance_id, 'running', v.started_at
        FROM unnest(run_ids, run_threads, run_owners, run_instances, run_started)
            AS v(run_id, thread_id, owner, instance_id, started_at);
    END IF;
    -- One row at a time, in the order given (by run id): a run ended twice in
    -- one batch ends once, the first time, as separate statements would.
    FOR i IN 1 .. coalesce(cardinality(ended_ids), 0) LOOP
        UPDATE runs AS r SET status = ended_statuses[i], finished_at = ended_times[i]
        WHERE r.run_id = ended_ids[i] AND r.status = 'running';
    END LOOP;
    IF cardinality(event_threads) > 0 THEN
        INSERT INTO events (thread_id, event_id, type, run_id, payload, created_at)
        SELECT v.thread_id, c.last + v.back, v.type, v.run_id, v.payload, v.created_at
        FROM unnest(event_threads, event_backs, event_types, event_runs, event_payloads,
                    event_created) AS v(thread_id, back, type, run_id, payload, created_at)
        JOIN unnest(changed_ids, changed_lasts) AS c(id, last) ON c.id = v.thread_id;
    END IF;
END
$body$
"""


def upgrade() -> None:
    """Create the function on PostgreSQL."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    """Drop it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS chatgate_write_batch")
