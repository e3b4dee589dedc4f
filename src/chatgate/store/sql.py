"""What the SQL stores share: the tables, the queries, group commit and error mapping.

:class:`SQLStore` implements the ``Store`` interface with SQLAlchemy Core
statements run on synchronous connections; ``store.sqlite`` and
``store.postgres`` say how they run (SQLite: reads on the event loop, writes on
a thread of its own; PostgreSQL: through asyncpg) and add what else differs per
database (allocating event ids, the database clock, locking). The schema itself
is created and changed by the Alembic migrations in ``chatgate.store.migrations``,
applied by :meth:`SQLStore.start` and by ``chatgate migrate``; the tables here
only describe it for queries.

Every write of a chat turn (a thread, a message, a run starting or ending, an
event) goes through one group commit: concurrent turns share transactions, and
each caller's awaitable returns once the transaction holding its write has
committed. A batch writes each table with one statement whatever the number of
turns in it, and a write the database refuses fails its own caller only.

Event ids are allocated by the database, in the transaction that stores the
events: ``threads.last_event_id`` is raised by the number of new events of the
thread, under the row lock the update takes, so that ids stay unique and dense
even when several processes write to one thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import orjson
from sqlalchemy import (
    update,
)
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import StoreUnavailable
from chatgate.models import Message, Role, RunRecord, RunStatus, StoredEvent, Thread, new_id
from chatgate.protocol import timestamp
from chatgate.store import statements
from chatgate.store.base import StoreOptions
from chatgate.store.batch import (
    DELTA,
    BatchPlan,
    EndedRun,
    NewDelta,
    NewEvent,
    NewMessage,
    NewRun,
    NewThread,
    ThreadChange,
    Write,
    Written,
    absorb,
)
from chatgate.store.group_commit import GroupCommit, GroupCommitClosed, Observer
from chatgate.store.schema import (
    events,
    messages,
    runs,
    threads,
    unavailable_on_driver_errors,
    upgrade_schema,
)
from chatgate.store.sql_leases import SQLLeases

T = TypeVar("T")


class SQLStore(SQLLeases):
    """The ``Store`` interface in SQLAlchemy Core; subclassed per database.

    A subclass runs what this class builds: :meth:`_run_query` a read,
    :meth:`_run_transaction` a function of a connection inside a write
    transaction, and :meth:`_dispose` closes every connection.
    """

    kind = "sql"

    def __init__(self, options: StoreOptions) -> None:
        self._writes = GroupCommit[Write, Written](
            self._write, linger_s=options.batch_ms / 1000, max_items=options.batch_max, merge=absorb
        )

    # Lifecycle

    async def start(self) -> None:
        """Connect and apply pending migrations."""
        await self._transact(self._migrate)

    async def close(self) -> None:
        """Write what is pending, then close every connection."""
        await self._writes.close()
        await self._dispose()

    def observe_writes(self, observer: Observer) -> None:
        """Tell ``observer`` each group commit's duration and size (for metrics)."""
        self._writes.observer = observer

    async def ping(self) -> None:
        """Run ``SELECT 1``."""
        await self._read(statements.PING)

    # Threads and messages

    async def create_thread(self, owner: str, title: str) -> Thread:
        """Create a thread owned by ``owner``; returns once it is committed."""
        thread, written = self.queue_thread(owner, title)
        await written
        return thread

    def queue_thread(self, owner: str, title: str) -> tuple[Thread, Awaitable[Written]]:
        """Queue a new thread for the next group commit now; await the write once."""
        now = timestamp()
        thread = Thread(new_id("th"), owner, title, now, now)
        try:
            queued: Awaitable[Written] = self._writes.enqueue(NewThread(thread))
        except GroupCommitClosed as exc:
            queued = self._failed(exc)
        return thread, queued

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it belongs to ``owner``."""
        rows = await self._read(statements.GET_THREAD, {"thread": thread_id, "owner": owner})
        return Thread(*tuple(rows[0])) if rows else None

    async def list_threads(self, owner: str) -> list[Thread]:
        """Return ``owner``'s threads, most recently updated first."""
        return [
            Thread(*tuple(row))
            for row in await self._read(statements.LIST_THREADS, {"owner": owner})
        ]

    async def add_message(
        self,
        thread_id: str,
        role: Role,
        content: str,
        run_id: str | None,
        message_id: str | None = None,
    ) -> Message:
        """Store a message and touch its thread; returns after the group commit holding it.

        Raises:
            LookupError: no thread ``thread_id`` exists.
        """
        return await self.queue_message(thread_id, role, content, run_id, message_id)

    async def list_messages(
        self, thread_id: str, limit: int | None = None, before: str | None = None
    ) -> list[Message]:
        """Return a thread's messages, oldest first: the last ``limit`` before ``before``."""
        if limit is None and before is None:
            rows = await self._read(statements.LIST_MESSAGES, {"thread": thread_id})
            return [Message(*tuple(row)) for row in rows]
        params = {"thread": thread_id, "limit": limit if limit is not None else statements.ALL_ROWS}
        if before is None:
            rows = await self._read(statements.RECENT_MESSAGES, params)
        else:
            rows = await self._read(statements.MESSAGES_BEFORE, {**params, "before": before})
        return [Message(*tuple(row)) for row in reversed(rows)]

    async def recent_turns(self, thread_id: str, limit: int) -> list[tuple[Role, str]]:
        """The role and text of a thread's most recent ``limit`` messages, oldest first."""
        rows = await self._read(statements.RECENT_TURNS, {"thread": thread_id, "limit": limit})
        return [(row[0], row[1]) for row in reversed(rows)]

    # The event log

    async def append_event(
        self, thread_id: str, run_id: str | None, kind: str, payload: dict[str, Any]
    ) -> StoredEvent:
        """Store the event with the thread's next id; returns after the group commit holding it.

        Raises:
            LookupError: no thread ``thread_id`` exists.
            TypeError: the payload cannot be encoded as JSON.
        """
        # Encoded here, once: a payload that cannot be encoded fails its own
        # caller instead of the whole batch it would have joined.
        return await self.queue_event(thread_id, run_id, kind, payload)

    def queue_event(
        self, thread_id: str, run_id: str | None, kind: str, payload: dict[str, Any]
    ) -> Awaitable[StoredEvent]:
        """Queue the event for the next group commit now; await it for the stored event.

        Raises:
            TypeError: (at once) the payload cannot be encoded as JSON.
            LookupError: (when awaited) no thread ``thread_id`` exists.
            StoreUnavailable: (when awaited) the database does not answer.
        """
        # Encoded here, once: a payload that cannot be encoded fails its own
        # caller, at once, instead of the whole batch it would have joined.
        new: Write | None = None
        if kind == DELTA:
            new = NewDelta.of(thread_id, run_id, payload, timestamp())
        if new is None:
            encoded = orjson.dumps(payload).decode()
            new = NewEvent(thread_id, run_id, kind, payload, encoded, timestamp())
        try:
            queued = self._writes.enqueue(new)
        except GroupCommitClosed as exc:
            return self._failed(exc)
        return cast("Awaitable[StoredEvent]", queued)

    def queue_message(
        self,
        thread_id: str,
        role: Role,
        content: str,
        run_id: str | None,
        message_id: str | None = None,
    ) -> Awaitable[Message]:
        """Queue a message for the next group commit now; await it for the stored message."""
        message = Message(
            message_id or new_id("msg"), thread_id, role, content, run_id, timestamp()
        )
        try:
            queued = self._writes.enqueue(NewMessage(message))
        except GroupCommitClosed as exc:
            return self._failed(exc)
        # Its result is the message itself (see BatchPlan.place).
        return cast("Awaitable[Message]", queued)

    async def _failed(self, exc: Exception) -> Any:
        with self._guard():
            raise exc

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events after ``after_event_id``, in order."""
        params = {"thread": thread_id, "after": after_event_id, "limit": limit}
        return [
            StoredEvent(*tuple(row)) for row in await self._read(statements.EVENTS_AFTER, params)
        ]

    # Runs and instances

    async def record_run(self, run: RunRecord) -> None:
        """Remember a running run; returns after the group commit holding it."""
        await self.queue_run(run)

    def queue_run(self, run: RunRecord) -> Awaitable[Written]:
        """Queue the record of a run that starts now; await it once committed."""
        try:
            queued = self._writes.enqueue(NewRun(run, timestamp()))
        except GroupCommitClosed as exc:
            return self._failed(exc)
        return queued

    async def get_run(self, owner: str, run_id: str) -> RunRecord | None:
        """Return the run when it belongs to ``owner``."""
        rows = await self._read(statements.GET_RUN, {"run": run_id, "owner": owner})
        if not rows:
            return None
        row = rows[0]
        return RunRecord(row.run_id, row.thread_id, row.owner, row.instance_id, status=row.status)

    async def count_running_runs(self, owner: str, other_than_instance: str) -> int:
        """How many of ``owner``'s runs are running on other instances."""
        rows = await self._read(
            statements.COUNT_RUNNING, {"owner": owner, "instance": other_than_instance}
        )
        return int(rows[0][0])

    async def finish_run(self, run_id: str, status: RunStatus) -> None:
        """Mark a running run as ended with ``status``; returns after the group commit."""
        await self._submit(EndedRun(run_id, status, timestamp()))

    def queue_run_end(self, run_id: str, status: RunStatus) -> Awaitable[Written]:
        """Queue the end of a run for the next group commit now; await it once committed."""
        try:
            return self._writes.enqueue(EndedRun(run_id, status, timestamp()))
        except GroupCommitClosed as exc:
            return self._failed(exc)

    # The group commit

    async def _submit(self, write: Write) -> Written:
        with self._guard():
            return await self._writes.submit(write)

    async def _write(self, batch: list[Write]) -> list[Written | Exception]:
        """The group commit's writer: the whole batch in one transaction.

        When the database refuses the batch (a constraint, a value it cannot
        keep), the writes are tried again one transaction each, so that the
        write at fault fails its own caller only.
        """
        try:
            return await self._write_together(batch)
        except StoreUnavailable:
            raise
        except Exception:
            if len(batch) == 1:
                raise
        results: list[Written | Exception] = []
        for index, write in enumerate(batch):
            try:
                results += await self._write_together([write])
            except StoreUnavailable as exc:
                # The writes before this one are committed; the rest are not tried.
                return results + [exc] * (len(batch) - index)
            except Exception as exc:  # noqa: BLE001 - not swallowed: its caller gets it
                results.append(exc)
        return results

    async def _write_together(self, batch: Sequence[Write]) -> list[Written | Exception]:
        """Write ``batch`` in one transaction; one result, or the error of that write, per write.

        A database that does not answer raises ``StoreUnavailable``, never the
        driver's own error: the awaitables of queued writes hand on what this raises.
        """
        plan = BatchPlan.of(batch)
        return await self._transact(lambda conn: self._write_plan(conn, plan))

    def _write_plan(self, conn: Connection, plan: BatchPlan) -> list[Written | Exception]:
        if plan.new_threads:
            conn.execute(threads.insert(), plan.new_threads)
        last_event_ids = self._change_threads(conn, plan.changes) if plan.changes else {}
        results = plan.place(last_event_ids)
        if plan.messages:
            conn.execute(messages.insert(), plan.messages)
        if plan.new_runs:
            conn.execute(runs.insert(), plan.new_runs)
        if plan.ended_runs:
            conn.execute(statements.END_RUN, plan.ended_runs)
        if plan.events:
            conn.execute(events.insert(), plan.events)
        return results

    # What each database does its own way

    def _before_migrations(self, conn: Connection) -> None:
        """Prepare for migrating (lock out concurrent migrators, create a schema)."""

    def _change_threads(
        self, conn: Connection, changes: Mapping[str, ThreadChange]
    ) -> dict[str, int]:
        """Apply each change to its thread's row; return the rows' new ``last_event_id``.

        ``last_event_id`` rises by the change's events, ``updated_at`` becomes
        its message's time when it has one. Threads that do not exist are
        missing from the answer. This default updates one thread at a time, in
        id order, so concurrent writers lock rows in the same order and cannot
        deadlock.
        """
        last: dict[str, int] = {}
        for thread_id in sorted(changes):
            change = changes[thread_id]
            values: dict[str, Any] = {"last_event_id": threads.c.last_event_id + change.events}
            if change.updated_at is not None:
                values["updated_at"] = change.updated_at
            statement = update(threads).where(threads.c.id == thread_id).values(values)
            row = conn.execute(statement.returning(threads.c.last_event_id)).first()
            if row is not None:
                last[thread_id] = int(row[0])
        return last

    def _database_epoch(self) -> ColumnElement[float]:
        """The database's clock in seconds since the epoch, so that hosts need not agree."""
        raise NotImplementedError

    async def _run_query(self, query: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
        """Run a read-only statement; return its rows."""
        raise NotImplementedError

    async def _run_transaction(self, work: Callable[[Connection], T]) -> T:
        """Call ``work`` inside a write transaction, then commit; return what it returned."""
        raise NotImplementedError

    async def _dispose(self) -> None:
        """Close every connection."""
        raise NotImplementedError

    # Plumbing

    def _migrate(self, conn: Connection) -> None:
        self._before_migrations(conn)
        upgrade_schema(conn)

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        return unavailable_on_driver_errors(self.kind)

    async def _read(
        self, query: Executable, params: Mapping[str, Any] | None = None
    ) -> list[Row[Any]]:
        with self._guard():
            return await self._run_query(query, params or {})

    async def _transact(self, work: Callable[[Connection], T]) -> T:
        with self._guard():
            return await self._run_transaction(work)
