"""The SQL stores' read statements, built once.

Building and hashing a statement costs more than running it, so every query
the stores run often is built here at import time, with bind parameters.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, literal_column, select, text, update

from chatgate.store.schema import Timestamp, events, messages, runs, threads

PING = text("SELECT 1")

THREAD_COLUMNS = (
    threads.c.id,
    threads.c.owner,
    threads.c.title,
    threads.c.created_at,
    threads.c.updated_at,
)

GET_THREAD = select(*THREAD_COLUMNS).where(
    threads.c.id == bindparam("thread"), threads.c.owner == bindparam("owner")
)

# Two threads touched in the same millisecond tie on updated_at; the one whose
# latest message was stored last (messages.seq only grows) is the more recent.
LATEST_MESSAGE = (
    select(func.coalesce(func.max(messages.c.seq), 0))
    .where(messages.c.thread_id == threads.c.id)
    .scalar_subquery()
)

LIST_THREADS = (
    select(*THREAD_COLUMNS)
    .where(threads.c.owner == bindparam("owner"))
    .order_by(threads.c.updated_at.desc(), LATEST_MESSAGE.desc(), threads.c.id.desc())
)

LIST_MESSAGES = (
    select(
        messages.c.id,
        messages.c.thread_id,
        messages.c.role,
        messages.c.content,
        messages.c.run_id,
        messages.c.created_at,
    )
    .where(messages.c.thread_id == bindparam("thread"))
    .order_by(messages.c.seq)
)

ALL_ROWS = 2**62
"""A LIMIT that takes every row (PostgreSQL refuses the -1 that SQLite reads so)."""

MESSAGE_COLUMNS = (
    messages.c.id,
    messages.c.thread_id,
    messages.c.role,
    messages.c.content,
    messages.c.run_id,
    messages.c.created_at,
)

# The most recent first, limited; the caller reverses the page to oldest first.
RECENT_MESSAGES = (
    select(*MESSAGE_COLUMNS)
    .where(messages.c.thread_id == bindparam("thread"))
    .order_by(messages.c.seq.desc())
    .limit(bindparam("limit"))
)

# What an agent's history needs, and no more: no timestamp to parse per row.
RECENT_TURNS = (
    select(messages.c.role, messages.c.content)
    .where(messages.c.thread_id == bindparam("thread"))
    .order_by(messages.c.seq.desc())
    .limit(bindparam("limit"))
)

# The same, with each message's place in the log, from past a given one: what
# the SQLite store's turn cache reads (0 for the latest whole).
TURNS_SINCE = (
    select(messages.c.seq, messages.c.role, messages.c.content)
    .where(messages.c.thread_id == bindparam("thread"), messages.c.seq > bindparam("after"))
    .order_by(messages.c.seq.desc())
    .limit(bindparam("limit"))
)

MESSAGES_BEFORE = (
    select(*MESSAGE_COLUMNS)
    .where(
        messages.c.thread_id == bindparam("thread"),
        messages.c.seq
        < select(messages.c.seq)
        .where(messages.c.id == bindparam("before"), messages.c.thread_id == bindparam("thread"))
        .scalar_subquery(),
    )
    .order_by(messages.c.seq.desc())
    .limit(bindparam("limit"))
)

EVENTS_AFTER = (
    select(
        events.c.thread_id,
        events.c.event_id,
        events.c.type,
        events.c.run_id,
        events.c.payload,
        events.c.created_at,
    )
    .where(events.c.thread_id == bindparam("thread"), events.c.event_id > bindparam("after"))
    .order_by(events.c.event_id)
    .limit(bindparam("limit"))
)

GET_RUN = select(
    runs.c.run_id, runs.c.thread_id, runs.c.owner, runs.c.instance_id, runs.c.status
).where(runs.c.run_id == bindparam("run"), runs.c.owner == bindparam("owner"))

# The status is written out, not bound: only then may the planner use the
# partial index of running runs by owner (migration 0004), the one index
# that holds running runs.
IS_RUNNING = runs.c.status == literal_column("'running'")

COUNT_RUNNING = select(func.count()).where(
    IS_RUNNING,
    runs.c.owner == bindparam("owner"),
    runs.c.instance_id != bindparam("instance"),
)

END_RUN = (
    update(runs)
    .where(runs.c.run_id == bindparam("run"), runs.c.status == "running")
    .values(status=bindparam("status"), finished_at=bindparam("ts", type_=Timestamp()))
)
