"""The PostgreSQL store's hot statements as asyncpg runs them, and their row codecs.

What ``chatgate.store.statements`` builds in SQLAlchemy Core for every SQL
store, written once more in PostgreSQL's own SQL for the chat path: asyncpg
prepares each text once per connection and keeps it, and a batch inserts each
table's rows with one ``unnest`` of arrays. The differential test
(``tests/integration/test_pg_differential.py``) runs both versions on the same
operations and requires the same answers.

Times cross as the protocol's strings (``2026-01-01T00:00:00.000Z``) on the
Python side and ``timestamptz`` in the database, as ``schema.Timestamp`` does;
event payloads are stored as the JSON text already encoded by the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from chatgate.models import Message, RunRecord, StoredEvent, Thread
from chatgate.protocol import timestamp
from chatgate.store.batch import ThreadChange

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
COUNT_RUNNING = (
    "SELECT count(*) FROM runs WHERE status = 'running' AND owner = $1 AND instance_id <> $2"
)

INSERT_THREADS = (
    "INSERT INTO threads (id, owner, title, created_at, updated_at, last_event_id)"
    " SELECT id, owner, title, created_at, updated_at, 0"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])"
    " AS v(id, owner, title, created_at, updated_at)"
)
# NO KEY UPDATE is the lock the UPDATE takes anyway; taken first, in id order,
# because one UPDATE over many rows locks them in whatever order its plan
# visits them, and two instances' batches must not deadlock.
LOCK_THREADS = "SELECT id FROM threads WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"
CHANGE_THREADS = (
    "UPDATE threads AS t SET last_event_id = t.last_event_id + v.n,"
    " updated_at = COALESCE(v.ts, t.updated_at)"
    " FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS v(id, n, ts)"
    " WHERE t.id = v.id RETURNING t.id, t.last_event_id"
)
# In submission order: messages.seq orders a thread's messages.
INSERT_MESSAGES = (
    "INSERT INTO messages (id, thread_id, role, content, run_id, created_at)"
    " SELECT id, thread_id, role, content, run_id, created_at"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::timestamptz[]) WITH ORDINALITY AS v(id, thread_id, role, content, run_id, created_at, o)"
    " ORDER BY o"
)
INSERT_RUNS = (
    "INSERT INTO runs (run_id, thread_id, owner, instance_id, status, started_at)"
    " SELECT run_id, thread_id, owner, instance_id, status, started_at"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])"
    " AS v(run_id, thread_id, owner, instance_id, status, started_at)"
)
# One row at a time (executemany): a run ended twice in one batch ends once,
# the first time, as separate statements would.
END_RUN = "UPDATE runs SET status = $2, finished_at = $3 WHERE run_id = $1 AND status = 'running'"
INSERT_EVENTS = (
    "INSERT INTO events (thread_id, event_id, type, run_id, payload, created_at)"
    " SELECT thread_id, event_id, type, run_id, payload, created_at"
    " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::json[],"
    " $6::timestamptz[]) AS v(thread_id, event_id, type, run_id, payload, created_at)"
)


def to_time(value: str) -> datetime:
    """The protocol's time string for the driver."""
    return datetime.fromisoformat(value)


def from_time(value: datetime) -> str:
    """The driver's ``timestamptz`` as the protocol's time string."""
    return timestamp(value.astimezone(UTC))


def columns(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str], times: Sequence[str] = ()
) -> list[list[Any]]:
    """One array per column of ``rows`` (a BatchPlan's), times parsed for the driver."""
    arrays: list[list[Any]] = []
    for name in names:
        if name in times:
            arrays.append([to_time(row[name]) for row in rows])
        else:
            arrays.append([row[name] for row in rows])
    return arrays


def change_arrays(changes: Mapping[str, ThreadChange]) -> tuple[list[str], list[int], list[Any]]:
    """The thread ids in lock order, with each one's new events and message time."""
    ids = sorted(changes)
    times = [changes[i].updated_at for i in ids]
    return (
        ids,
        [changes[i].events for i in ids],
        [None if t is None else to_time(t) for t in times],
    )


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
