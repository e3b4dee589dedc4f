"""The SQLite store's hot path on ``sqlite3`` itself: SQL compiled once, values coded once.

Executing a statement through SQLAlchemy (its cache lookup, execution context,
bind and result processing, transaction wrapper) costs several times what
SQLite takes to run it. On the paths every chat turn takes (the group commit's
batch and the agent's history read) the store runs the very statements of
``store.statements`` and ``store.schema``, compiled here to SQL text at import
time, on a ``sqlite3`` connection; one is written here, the threads' update of a
batch, which does in one statement what SQLAlchemy's does in one per thread.
Values cross as SQLAlchemy's column types
would make them cross: :func:`stored_time` and :func:`protocol_time` do what the
``Timestamp`` column does (with SQLAlchemy's own processors for any value off
their fast path), and payloads are the JSON column's text.
``tests/unit/test_sqlite_rows.py`` holds both, and every statement here, to
SQLAlchemy's results.
"""

from __future__ import annotations

import functools
import operator
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from chatgate.models import Role, StoredEvent, Thread
from chatgate.store import statements
from chatgate.store.batch import BatchPlan, Written
from chatgate.store.schema import Timestamp, dump_json, events, load_json, messages, runs, threads

DIALECT = sqlite.dialect(paramstyle="qmark", json_serializer=dump_json, json_deserializer=load_json)
"""The dialect the SQLite engines use; ``sqlite3`` binds a tuple of parameters several
times faster than a dict of named ones."""

_TIME = Timestamp().dialect_impl(DIALECT)
_BIND_TIME = cast("Callable[[str | None], str | None]", _TIME.bind_processor(DIALECT))
_RESULT_TIME = cast("Callable[[str | None], str | None]", _TIME.result_processor(DIALECT, None))
_RESULT_JSON = cast(
    "Callable[[str | None], Any]",
    events.c.payload.type.dialect_impl(DIALECT).result_processor(DIALECT, None),
)
# What timestamp() writes and what SQLite's DATETIME keeps, from year 1000 on
# (strftime does not pad earlier years: those take SQLAlchemy's own path).
_PROTOCOL_TIME = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_STORED_TIME = re.compile(r"[1-9]\d{3}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


# A batch's rows share a handful of times (milliseconds apart): each is converted once.
@functools.lru_cache(maxsize=1024)
def stored_time(value: str) -> str:
    """The text SQLite keeps for a protocol time, exactly as the ``Timestamp`` column binds it."""
    if _PROTOCOL_TIME.fullmatch(value):
        # Parsed only to refuse a date that does not exist, as the column's own parse does.
        datetime.fromisoformat(value)
        return f"{value[:10]} {value[11:23]}000"
    return cast("str", _BIND_TIME(value))


@functools.lru_cache(maxsize=1024)
def protocol_time(stored: str) -> str:
    """The protocol time of a stored one, exactly as the ``Timestamp`` column reads it."""
    if _STORED_TIME.fullmatch(stored):
        datetime.fromisoformat(stored)
        return f"{stored[:10]}T{stored[11:23]}Z"
    return cast("str", _RESULT_TIME(stored))


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement as SQL text, with the values it binds itself (a literal, an OFFSET 0)."""

    sql: str
    constants: dict[str, Any]
    names: tuple[str, ...]
    """The parameters' names, in the order of the statement's placeholders."""
    _order: Callable[[Mapping[str, Any]], Any]

    @classmethod
    def of(cls, statement: ClauseElement, keys: Sequence[str] | None = None) -> Compiled:
        """Compile ``statement`` for SQLite; an INSERT binds only ``keys``."""
        compiled = cast("SQLCompiler", statement.compile(dialect=DIALECT, column_keys=keys))
        names = tuple(compiled.positiontup or ())
        constants = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if name in names and not bind.required and bind.value is not None
        }
        return cls(str(compiled), constants, names, operator.itemgetter(*names, names[0]))

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The statement's parameters, in order: its own constants and ``values``."""
        # The getter names one parameter twice, so that it returns a tuple even
        # for a statement of one parameter; the extra value is dropped here.
        ordered: tuple[Any, ...] = self._order(
            {**self.constants, **values} if self.constants else values
        )
        return ordered[:-1]

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[Any, ...]]:
        """The parameters of each of ``rows``."""
        return map(self.params, rows)


def _insert_keys(table_keys: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    return [key for key in table_keys if key not in set(skip)]


INSERT_THREAD = Compiled.of(threads.insert(), _insert_keys(threads.c.keys()))
INSERT_MESSAGE = Compiled.of(messages.insert(), _insert_keys(messages.c.keys(), {"seq"}))
INSERT_RUN = Compiled.of(runs.insert(), _insert_keys(runs.c.keys(), {"finished_at"}))
INSERT_EVENT = Compiled.of(events.insert(), _insert_keys(events.c.keys()))
END_RUN = Compiled.of(statements.END_RUN)
RECENT_TURNS = Compiled.of(statements.RECENT_TURNS)
TURNS_SINCE = Compiled.of(statements.TURNS_SINCE)
EVENTS_AFTER = Compiled.of(statements.EVENTS_AFTER)
GET_THREAD = Compiled.of(statements.GET_THREAD)

# The columns of each row of a plan that hold a time.
_TIMES = {
    "new_threads": ("created_at", "updated_at"),
    "new_runs": ("started_at",),
    "ended_runs": ("ts",),
    "messages": ("created_at",),
    "events": ("created_at",),
}


def _store_times(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    for row in rows:
        for key in keys:
            if row[key] is not None:
                row[key] = stored_time(row[key])
    return rows


def write_plan(conn: sqlite3.Connection, plan: BatchPlan) -> list[Written | Exception]:
    """Write ``plan`` in the transaction open on ``conn``, as ``SQLStore._write_plan`` does."""
    if plan.new_threads:
        _insert(conn, INSERT_THREAD, plan.new_threads, "new_threads")
    results = plan.place(change_threads(conn, plan) if plan.changes else {})
    if plan.messages:
        _insert(conn, INSERT_MESSAGE, plan.messages, "messages")
    if plan.new_runs:
        _insert(conn, INSERT_RUN, plan.new_runs, "new_runs")
    if plan.ended_runs:
        _insert(conn, END_RUN, plan.ended_runs, "ended_runs")
    if plan.events:
        _insert(conn, INSERT_EVENT, plan.events, "events")
    return results


def _insert(
    conn: sqlite3.Connection, statement: Compiled, rows: list[dict[str, Any]], kind: str
) -> None:
    conn.executemany(statement.sql, statement.rows(_store_times(rows, _TIMES[kind])))


_CHANGE_CHUNK = 256
"""Most threads one statement changes; a batch of more takes several."""


@functools.lru_cache(maxsize=16)
def _change_sql(rows: int) -> str:
    """The threads' update of ``SQLStore._change_threads`` for ``rows`` threads, as one statement.

    Each row is (thread id, new events, time or NULL). Statement sizes are
    powers of two, padded with rows that match no thread, so that a few
    prepared statements serve every batch.
    """
    values = ", ".join(["(?, ?, ?)"] * rows)
    # Only placeholders are formatted in.
    return _CHANGE_SQL.format(values=values)


_CHANGE_SQL = (
    "UPDATE threads SET last_event_id = threads.last_event_id + v.column2,"
    " updated_at = coalesce(v.column3, threads.updated_at)"
    " FROM (VALUES {values}) AS v WHERE threads.id = v.column1"
    " RETURNING threads.id, threads.last_event_id"
)


def change_threads(conn: sqlite3.Connection, plan: BatchPlan) -> dict[str, int]:
    """Raise each changed thread's ``last_event_id``; return the new values of those that exist.

    What ``SQLStore._change_threads`` does to each, for all of them in one
    statement (SQLite locks the whole database: the order of the rows does not
    matter here).
    """
    rows: list[Any] = []
    for thread_id, change in plan.changes.items():
        ts = None if change.updated_at is None else stored_time(change.updated_at)
        rows += (thread_id, change.events, ts)
    last: dict[str, int] = {}
    for start in range(0, len(rows), 3 * _CHANGE_CHUNK):
        chunk = rows[start : start + 3 * _CHANGE_CHUNK]
        size = 1 << (len(chunk) // 3 - 1).bit_length()
        chunk += (None, 0, None) * (size - len(chunk) // 3)
        for thread_id, value in conn.execute(_change_sql(size), chunk):
            last[thread_id] = int(value)
    return last


def recent_turns(conn: sqlite3.Connection, thread_id: str, limit: int) -> list[tuple[Role, str]]:
    """The role and text of the thread's most recent ``limit`` messages, oldest first."""
    rows = conn.execute(
        RECENT_TURNS.sql, RECENT_TURNS.params({"thread": thread_id, "limit": limit})
    ).fetchall()
    return [(row[0], row[1]) for row in reversed(rows)]


def turns_since(
    conn: sqlite3.Connection, thread_id: str, after_seq: int, limit: int
) -> list[tuple[int, Role, str]]:
    """The thread's latest ``limit`` messages past ``after_seq``, newest first: seq, role, text."""
    params = TURNS_SINCE.params({"thread": thread_id, "after": after_seq, "limit": limit})
    return conn.execute(TURNS_SINCE.sql, params).fetchall()


def events_after(
    conn: sqlite3.Connection, thread_id: str, after_event_id: int, limit: int
) -> list[StoredEvent]:
    """Up to ``limit`` of the thread's events after ``after_event_id``, in order."""
    params = EVENTS_AFTER.params({"thread": thread_id, "after": after_event_id, "limit": limit})
    return [
        StoredEvent(thread, event_id, kind, run_id, _RESULT_JSON(payload), protocol_time(ts))
        for thread, event_id, kind, run_id, payload, ts in conn.execute(EVENTS_AFTER.sql, params)
    ]


def get_thread(conn: sqlite3.Connection, owner: str, thread_id: str) -> Thread | None:
    """The thread when it exists and belongs to ``owner``."""
    row = conn.execute(
        GET_THREAD.sql, GET_THREAD.params({"thread": thread_id, "owner": owner})
    ).fetchone()
    if row is None:
        return None
    return Thread(row[0], row[1], row[2], protocol_time(row[3]), protocol_time(row[4]))
