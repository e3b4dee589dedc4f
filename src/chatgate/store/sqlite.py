"""The SQLite store: one file (``sqlite:///./chatgate.db``), in WAL mode, through ``sqlite3``.

The default store: nothing to install or run. A statement on a local file
takes microseconds, less than a hop to a driver thread costs on a busy event
loop (the hop waits for the loop, and the thread for the GIL), so each kind of
work runs where it costs least:

- A chat turn's statements (``store.sqlite_rows``) run on ``sqlite3`` itself,
  on the event loop: reads on a connection that never writes (in WAL mode a
  reader never waits for the writer), and, with ``synchronous=NORMAL``, the
  group commit's batches, whose commit only appends to the log. "Database is
  busy" (another process holding the lock) is waited for by an asynchronous
  sleep, never in SQLite's busy handler, which would stop the loop.
- What may wait for the disk runs on one thread of the store's own: the log's
  checkpoints (an fsync), the batches of ``synchronous=FULL``, and, through
  SQLAlchemy, migrations, heartbeats and claims.
- The agents' history comes from a cache of each thread's latest turns, topped
  up with what was added since (``store.turn_cache``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Table, event, func, literal
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from chatgate.logs import get_logger
from chatgate.models import Role, StoredEvent, Thread
from chatgate.store import sqlite_connections as opening
from chatgate.store import sqlite_rows
from chatgate.store.base import StoreOptions
from chatgate.store.batch import BatchPlan, Write, Written
from chatgate.store.sql import SQLStore
from chatgate.store.turn_cache import TurnCache

T = TypeVar("T")

log = get_logger("chatgate.store.sqlite")

_CHECKPOINT_EVERY = 256
"""Commits on the loop between two checkpoints of the log, on the writer's thread."""
_UNIX_EPOCH_JULIAN_DAY = 2440587.5
_SECONDS_PER_DAY = 86400.0


def _commit_plan(conn: sqlite3.Connection, plan: BatchPlan) -> list[Written | Exception]:
    """Write ``plan`` in the transaction just begun on ``conn``, and commit it."""
    try:
        results = sqlite_rows.write_plan(conn, plan)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


class SQLiteStore(SQLStore):
    """The ``Store`` interface on a SQLite file.

    The group commit's batches and the reads of every chat turn run on
    ``sqlite3`` connections of their own (see ``store.sqlite_rows``); the rest
    (migrations, leases, claims, listings) through SQLAlchemy.
    """

    kind = "sqlite"
    locks_rows = False

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        target = opening.sqlite_url(url)
        self._database = str(target.database)
        self._reader = opening.engine(target, opening.configure_reader)
        synchronous = (options or StoreOptions()).sqlite_synchronous
        self._synchronous = synchronous
        self._unavailable = opening.Unavailable(self.kind)
        self._configure_writer = functools.partial(opening.configure_writer, synchronous)
        self._configure_loop_writer = functools.partial(opening.configure_loop_writer, synchronous)
        self._writer = opening.engine(target, self._configure_writer)
        event.listen(self._writer, "begin", opening.begin)
        # Kept from one read to the next: a checkout and a return to the pool
        # cost as much as the query itself.
        self._reading: Connection | None = None
        self._turns = TurnCache()
        self._raw_reading: sqlite3.Connection | None = None
        # The group commit's connection: on the loop (NORMAL), or on the writer's thread (FULL).
        self._loop_writing: sqlite3.Connection | None = None
        self._thread_writing: sqlite3.Connection | None = None
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None
        # Started by the first write, so that a store never started holds no thread.
        self._writer_thread: ThreadPoolExecutor | None = None
        super().__init__(options or StoreOptions())

    # The hot path, on sqlite3

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it belongs to ``owner``."""
        return await self._raw_read(sqlite_rows.get_thread, owner, thread_id)

    async def recent_turns(self, thread_id: str, limit: int) -> list[tuple[Role, str]]:
        """The role and text of a thread's most recent ``limit`` messages, oldest first.

        From the turn cache, brought up to date with the messages added since.
        """
        if limit <= 0:
            return []
        return await self._raw_read(self._recent_turns, thread_id, limit)

    def _recent_turns(
        self, conn: sqlite3.Connection, thread_id: str, limit: int
    ) -> list[tuple[Role, str]]:
        after = self._turns.after(thread_id, limit)
        rows = sqlite_rows.turns_since(conn, thread_id, after or 0, limit)
        if after is None:
            return self._turns.read_whole(thread_id, limit, rows)
        return self._turns.read_newer(thread_id, limit, rows)

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events after ``after_event_id``, in order."""
        return await self._raw_read(sqlite_rows.events_after, thread_id, after_event_id, limit)

    async def _write_together(self, batch: Sequence[Write]) -> list[Written | Exception]:
        plan = BatchPlan.of(batch)
        with self._guard():
            if self._synchronous == "FULL":
                return await self._on_writer(self._thread_transaction, plan)
            return await self._loop_transaction(plan)

    async def _loop_transaction(self, plan: BatchPlan) -> list[Written | Exception]:
        # A NORMAL commit in WAL mode appends to the log without waiting for the
        # disk: tens of microseconds, less than the hop to a thread costs. The
        # lock is waited for here, asynchronously, never in SQLite's busy handler.
        conn = await self._retry_busy(self._begin_on_loop)
        results = _commit_plan(conn, plan)
        self._commits += 1
        if self._commits % _CHECKPOINT_EVERY == 0 and self._checkpoint is None:
            self._checkpoint = self._on_writer(self._checkpoint_log)
            self._checkpoint.add_done_callback(self._checkpointed)
        return results

    def _begin_on_loop(self) -> sqlite3.Connection:
        conn = self._loop_writing
        if conn is None:
            conn = self._loop_writing = opening.connect(self._database, self._configure_loop_writer)
        conn.execute("BEGIN IMMEDIATE")
        return conn

    def _thread_transaction(self, plan: BatchPlan) -> list[Written | Exception]:
        conn = self._thread_connection()
        conn.execute("BEGIN IMMEDIATE")
        return _commit_plan(conn, plan)

    def _thread_connection(self) -> sqlite3.Connection:
        conn = self._thread_writing
        if conn is None:
            conn = self._thread_writing = opening.connect(self._database, self._configure_writer)
        return conn

    def _checkpoint_log(self) -> None:
        conn = self._thread_connection()
        # PASSIVE copies the log into the file while the loop goes on committing;
        # racing those commits it never copies all of it, and the log starts
        # over only once all of it is copied. RESTART then copies the little
        # that came meanwhile holding the write lock (the loop's writes wait
        # for it asynchronously), so that the next commit starts the log over.
        # RESTART alone would hold the lock for the whole copy and its fsync.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not done.cancelled() and (exc := done.exception()) is not None:
            log.warning("sqlite_checkpoint_failed", error=type(exc).__name__)

    async def _raw_read(self, read: Callable[..., T], *args: Any) -> T:
        with self._guard():
            return await self._retry_busy(self._raw_query, read, *args)

    def _raw_query(self, read: Callable[..., T], *args: Any) -> T:
        conn = self._raw_reading
        if conn is None:
            conn = self._raw_reading = opening.connect(self._database, opening.configure_reader)
        try:
            return read(conn, *args)
        except sqlite3.Error:
            # A connection that failed is not trusted with the next read.
            self._raw_reading = None
            conn.close()
            raise

    # SQLAlchemy's part

    async def _run_query(self, query: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
        return await self._retry_busy(self._query, query, params)

    async def _retry_busy(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on the loop, tried again after a pause while the database is busy."""
        try:
            return call(*args)
        except (OperationalError, sqlite3.OperationalError) as exc:
            if not opening.busy(exc):
                raise
        # Busy: the clock is read only now (asking for the loop costs a system
        # call on Python 3.11, and almost every call gets through at once).
        pause, longest = opening.READ_RETRY_S
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opening.BUSY_TIMEOUT_S
        while True:
            await asyncio.sleep(pause)
            try:
                return call(*args)
            except (OperationalError, sqlite3.OperationalError) as exc:
                if not opening.busy(exc) or loop.time() + pause > deadline:
                    raise
            pause = min(2 * pause, longest)

    def _query(self, query: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
        conn = self._reading
        if conn is None:
            conn = self._reading = self._reader.connect()
        try:
            # Fetching every row ends the statement, and with it the read transaction.
            return list(conn.execute(query, params).all())
        except BaseException:
            # A connection that failed is not trusted with the next read.
            self._reading = None
            conn.close()
            raise

    async def _run_transaction(self, work: Callable[[Connection], T]) -> T:
        return await self._on_writer(self._transaction, work)

    def _on_writer(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._writer_thread is None:
            self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="chatgate-sqlite")
        return asyncio.get_running_loop().run_in_executor(self._writer_thread, call, *args)

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        with self._writer.begin() as conn:
            return work(conn)

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        return self._unavailable

    async def _dispose(self) -> None:
        thread, self._writer_thread = self._writer_thread, None
        if thread is None and self._loop_writing is not None:
            self._loop_writing.close()
            self._loop_writing = None
        if thread is not None:
            # Queued behind any transaction still running, so that none is cut short.
            await asyncio.get_running_loop().run_in_executor(thread, self._close_writers)
            thread.shutdown(wait=False)
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.close()
        raw, self._raw_reading = self._raw_reading, None
        if raw is not None:
            raw.close()
        self._reader.dispose()

    def _close_writers(self) -> None:
        for conn in (self._thread_writing, self._loop_writing):
            if conn is not None:
                conn.close()
        self._thread_writing = self._loop_writing = None
        self._writer.dispose()

    def _database_epoch(self) -> ColumnElement[float]:
        julian_now = func.julianday(literal("now"))
        return (julian_now - _UNIX_EPOCH_JULIAN_DAY) * _SECONDS_PER_DAY

    @staticmethod
    def _dialect_insert(table: Table) -> Any:
        """The database's INSERT, the one with ``on_conflict_do_update``."""
        return insert(table)
