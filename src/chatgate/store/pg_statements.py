"""The PostgreSQL store's hot statements as asyncpg runs them, and their row codecs.

What ``chatgate.store.statements`` builds in SQLAlchemy Core for every SQL
store, written once more in PostgreSQL's own SQL for the chat path: asyncpg
prepares each text once per connection and keeps it, and a batch is one call
of the function ``chatgate_write_batch`` (migration 0003), which writes each
table's rows with one ``unnest`` of arrays. The differential test
(``tests/integration/test_pg_differential.py``) runs both versions on the same
operations and requires the same answers.

Times cross as the protocol's strings (``2026-01-01T00:00:00.000Z``) on the
Python side and ``timestamptz`` in the database, as ``schema.Timestamp`` does;
event payloads are stored as the JSON text already encoded by the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from chatgate.models import Message, RunRecord, StoredEvent, Thread
from chatgate.protocol import timestamp
from chatgate.store.batch import BatchPlan

GET_THREAD = (
    "SELECT id, owner, title, created_at, updated_at FROM threads WHERE id = $1 AND owner = $2"
)
# Ties on updated_at: the thread whose latest message was stored last comes first.
LIST_THREADS = (
    "SELECT id, owner, title, created_at, updated_at FROM threads"
    " WHERE owner = $1 ORDER BY updated_at DESC,"
    " (SELECT coalesce(max(m.seq), 0) FROM messages AS m WHERE m.thread_id = threads.id) DESC,"
    " id DESC"
)
LIST_MESSAGES = (
    "SELECT id, thread_id, role, content, run_id, created_at FROM messages"
    " WHERE thread_id = $1 ORDER BY seq"
)
RECENT_MESSAGES = (
    "SELECT id, thread_id, role, content, run_id, created_at FROM messages"
    " WHERE thread_id = $1 ORDER BY seq DESC LIMIT $2"
)
MESSAGES_BEFORE = (
    "SELECT id, thread_id, role, content, run_id, created_at FROM messages"
    " WHERE thread_id = $1"
    " AND seq < (SELECT b.seq FROM messages AS b WHERE b.id = $3 AND b.thread_id = $1)"
    " ORDER BY seq DESC LIMIT $2"
)
RECENT_TURNS = "SELECT role, content FROM messages WHERE thread_id = $1 ORDER BY seq DESC LIMIT $2"
EVENTS_AFTER = (
    "SELECT thread_id, event_id, type, run_id, payload, created_at FROM events"
    " WHERE thread_id = $1 AND event_id > $2 ORDER BY event_id LIMIT $3"
)
GET_RUN = (
    "SELECT run_id, thread_id, owner, instance_id, status FROM runs"
    " WHERE run_id = $1 AND owner = $2"
)
# Many users' counts in one statement: concurrent messages share it.
COUNT_RUNNING = (
    "SELECT owner, count(*) FROM runs WHERE status = 'running'"
    " AND owner = ANY($1::text[]) AND instance_id <> $2 GROUP BY owner"
)

# A batch in one call: the arrays of ``batch_arguments``. The function is
# created by migration 0003.
WRITE_BATCH = (
    "SELECT changed_ids, changed_lasts FROM chatgate_write_batch("
    " $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
    " $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
)


def to_time(value: str) -> datetime:
    """The protocol's time string for the driver."""
    return datetime.fromisoformat(value)


def from_time(value: datetime) -> str:
    """The driver's ``timestamptz`` as the protocol's time string."""
    return timestamp(value.astimezone(UTC))


def batch_arguments(plan: BatchPlan) -> list[list[Any]]:
    """``WRITE_BATCH``'s arguments for ``plan``: one array per column, times parsed."""
    # Arrays, not one JSON document: the document is cheaper for the gateway
    # to encode but costs PostgreSQL as much more to parse, and the database
    # is what every instance shares (docs/storage.md has the figures).
    threads, runs, ended = plan.new_threads, plan.new_runs, plan.ended_runs
    ids = sorted(plan.changes)
    changes = [plan.changes[i] for i in ids]
    messages = plan.queued_messages
    events = plan.queued_events
    return [
        [t["id"] for t in threads],
        [t["owner"] for t in threads],
        [t["title"] for t in threads],
        [to_time(t["created_at"]) for t in threads],
        [to_time(t["updated_at"]) for t in threads],
        ids,
        [c.events for c in changes],
        [None if c.updated_at is None else to_time(c.updated_at) for c in changes],
        [m.id for m in messages],
        [m.thread_id for m in messages],
        [m.role for m in messages],
        [m.content for m in messages],
        [m.run_id for m in messages],
        [to_time(m.created_at) for m in messages],
        [r["run_id"] for r in runs],
        [r["thread_id"] for r in runs],
        [r["owner"] for r in runs],
        [r["instance_id"] for r in runs],
        [to_time(r["started_at"]) for r in runs],
        [r["run"] for r in ended],
        [r["status"] for r in ended],
        [to_time(r["ts"]) for r in ended],
        [e.thread_id for e, _ in events],
        # Counted from the end of the thread's events in the batch: 0 for the last.
        [place - plan.changes[e.thread_id].events for e, place in events],
        [e.type for e, _ in events],
        [e.run_id for e, _ in events],
        [e.encoded for e, _ in events],
        [to_time(e.ts) for e, _ in events],
    ]


def thread_of(row: Sequence[Any]) -> Thread:
    """A thread from a row of ``GET_THREAD`` or ``LIST_THREADS``."""
    return Thread(row[0], row[1], row[2], from_time(row[3]), from_time(row[4]))


def message_of(row: Sequence[Any]) -> Message:
    """A message from a row of the message queries."""
    return Message(row[0], row[1], row[2], row[3], row[4], from_time(row[5]))


def event_of(row: Sequence[Any]) -> StoredEvent:
    """An event from a row of ``EVENTS_AFTER``."""
    return StoredEvent(row[0], row[1], row[2], row[3], orjson.loads(row[4]), from_time(row[5]))


def run_of(row: Sequence[Any]) -> RunRecord:
    """A run from a row of ``GET_RUN``."""
    return RunRecord(row[0], row[1], row[2], row[3], status=row[4])
