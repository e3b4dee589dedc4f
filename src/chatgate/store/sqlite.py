"""The SQLite store: one file (``sqlite:///./chatgate.db``), in WAL mode, through ``sqlite3``.

The default store: nothing to install or run. A statement on a local file
takes microseconds, less than a hop to a driver thread costs on a busy event
loop (the hop waits for the loop, and the thread for the GIL), so each kind of
work runs where it costs least:

- Reads run on the event loop, one statement each, on a connection that never
  writes. In WAL mode a reader never waits for the writer. The rare "database
  is busy" (another process recovering the file, say) is retried after an
  asynchronous sleep, never in SQLite's busy handler, which would stop the loop.
- Write transactions run on one thread of the store's own, each in one hop:
  the group commit's batches, heartbeats, claims and migrations. SQLite lets
  one writer in at a time anyway; a commit that waits (for another process's
  lock, or a checkpoint's fsync) waits there, not on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, create_engine, event, func, literal, select, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import URL, Connection, Engine, Row, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import ConfigError, StoreUnavailable
from chatgate.logs import get_logger
from chatgate.models import Role, StoredEvent, Thread
from chatgate.store import sqlite_rows
from chatgate.store.base import StoreOptions
from chatgate.store.batch import BatchPlan, ThreadChange, Write, Written
from chatgate.store.group_commit import GroupCommitClosed
from chatgate.store.schema import (
    Timestamp,
    dump_json,
    load_json,
    threads,
    unavailable_on_driver_errors,
)
from chatgate.store.sql import SQLStore

T = TypeVar("T")

log = get_logger("chatgate.store.sqlite")

_DRIVER = "sqlite+pysqlite"
# aiosqlite was the driver once; URLs naming it keep working.
_DRIVER_NAMES = frozenset({"sqlite", _DRIVER, "sqlite+aiosqlite"})
_BUSY_TIMEOUT_S = 5.0
_WAL_RETRY_S = 0.01
_READ_RETRY_S = (0.001, 0.05)
"""The first and the longest pause between two tries of a read the database found busy."""
_CHECKPOINT_EVERY = 256
"""Commits on the loop between two checkpoints of the log, on the writer's thread."""
_UNIX_EPOCH_JULIAN_DAY = 2440587.5
_SECONDS_PER_DAY = 86400.0
# SQLite allows 32766 parameters a statement; stay far below.
_IDS_PER_SELECT = 1000
_CHANGE = (
    update(threads)
    .where(threads.c.id == bindparam("thread"))
    .values(
        last_event_id=threads.c.last_event_id + bindparam("n"),
        updated_at=func.coalesce(bindparam("ts", type_=Timestamp()), threads.c.updated_at),
    )
)
_WRITER_PRAGMAS = (
    f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}",
    "PRAGMA foreign_keys=ON",
)
_LOOP_WRITER_PRAGMAS = (
    "PRAGMA busy_timeout=0",
    "PRAGMA foreign_keys=ON",
    "PRAGMA wal_autocheckpoint=0",
    "PRAGMA cache_size=-65536",
)
_READER_PRAGMAS = (
    # Busy means "retry later" (see SQLiteStore._run_query), never "sleep on the loop".
    "PRAGMA busy_timeout=0",
    "PRAGMA query_only=ON",
)


def sqlite_url(url: str) -> URL:
    """The SQLAlchemy URL of ``sqlite:///path``, checking that the file can be created.

    Raises:
        ConfigError: the URL is malformed, names another driver, or its directory is missing.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("CHATGATE_DATABASE_URL", "not a valid sqlite:/// URL") from None
    if parsed.drivername not in _DRIVER_NAMES:
        raise ConfigError("CHATGATE_DATABASE_URL", "use sqlite:///path")
    database = parsed.database or ""
    if database in {"", ":memory:"}:
        raise ConfigError(
            "CHATGATE_DATABASE_URL", "name a file, as in sqlite:///./chatgate.db (or use memory://)"
        )
    directory = Path(database).expanduser().parent
    if not directory.is_dir():
        raise ConfigError("CHATGATE_DATABASE_URL", f"directory {str(directory)!r} does not exist")
    return parsed.set(drivername=_DRIVER)


def _engine(url: URL, configure: Callable[[Any, Any], None]) -> Engine:
    """An engine of one connection, which ``configure`` sets up.

    One is enough: the reader's statements never overlap (each runs to its end
    on the loop), nor do the writer's (one thread).
    """
    engine = create_engine(
        url,
        json_serializer=dump_json,
        json_deserializer=load_json,
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},
    )
    event.listen(engine, "connect", configure)
    return engine


def _configure_writer(synchronous: str, dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling begins transactions only before
    # INSERT/UPDATE/DELETE, so DDL (migrations) would commit statement by
    # statement; the writer emits BEGIN itself instead (see _begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _WRITER_PRAGMAS:
            cursor.execute(pragma)
        # In WAL mode NORMAL loses no commit when the process dies (only on power
        # loss or an OS crash), and saves an fsync per commit; FULL loses none.
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        _enable_wal(cursor)
    finally:
        cursor.close()


def _configure_reader(dbapi_connection: Any, _record: Any) -> None:
    # Never BEGIN: each of the reader's statements is a transaction of its own.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _READER_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so), waiting for instances opening it at once.

    The switch needs an exclusive lock, and SQLite answers "database is locked"
    at once there instead of calling the busy handler.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            # This runs on the writer's thread, never on the event loop.
            time.sleep(_WAL_RETRY_S)
        else:
            return


def _begin(conn: Connection) -> None:
    # A write transaction takes the write lock at BEGIN, waiting for it in the
    # busy handler; a deferred one that upgrades later fails at once when
    # another writer got in between.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _busy(exc: Exception) -> bool:
    driver_error = exc.orig if isinstance(exc, OperationalError) else exc
    code = getattr(driver_error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


class _Unavailable:
    """``unavailable_on_driver_errors``, also for what ``sqlite3`` raises on the hot path.

    A class, not a generator: it guards every read and batch of a chat turn.
    """

    __slots__ = ("_kind",)

    def __init__(self, kind: str) -> None:
        self._kind = kind

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
            raise StoreUnavailable(f"{self._kind} store unavailable: {type(exc).__name__}") from exc
        if isinstance(exc, SQLAlchemyError | OSError | TimeoutError | GroupCommitClosed):
            # The mapping every SQL store shares, for what went through SQLAlchemy.
            with unavailable_on_driver_errors(self._kind):
                raise exc


def _configure_loop_writer(synchronous: str, dbapi_connection: Any, _record: Any) -> None:
    # Busy means "retry later" (see SQLiteStore._retry_busy), never "sleep on
    # the loop"; checkpoints (an fsync) run on the writer's thread instead.
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _LOOP_WRITER_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA synchronous={synchronous}")
    finally:
        cursor.close()


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


def _connect(database: str, configure: Callable[[Any, Any], None]) -> sqlite3.Connection:
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        configure(conn, None)
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteStore(SQLStore):
    """The ``Store`` interface on a SQLite file.

    The group commit's batches and the reads of every chat turn run on
    ``sqlite3`` connections of their own (see ``store.sqlite_rows``); the rest
    (migrations, leases, claims, listings) through SQLAlchemy.
    """

    kind = "sqlite"

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        target = sqlite_url(url)
        self._database = str(target.database)
        self._reader = _engine(target, _configure_reader)
        synchronous = (options or StoreOptions()).sqlite_synchronous
        self._synchronous = synchronous
        self._unavailable = _Unavailable(self.kind)
        self._configure_writer = functools.partial(_configure_writer, synchronous)
        self._configure_loop_writer = functools.partial(_configure_loop_writer, synchronous)
        self._writer = _engine(target, self._configure_writer)
        event.listen(self._writer, "begin", _begin)
        # Kept from one read to the next: a checkout and a return to the pool
        # cost as much as the query itself.
        self._reading: Connection | None = None
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
        """The role and text of a thread's most recent ``limit`` messages, oldest first."""
        return await self._raw_read(sqlite_rows.recent_turns, thread_id, limit)

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
            conn = self._loop_writing = _connect(self._database, self._configure_loop_writer)
        conn.execute("BEGIN IMMEDIATE")
        return conn

    def _thread_transaction(self, plan: BatchPlan) -> list[Written | Exception]:
        conn = self._thread_connection()
        conn.execute("BEGIN IMMEDIATE")
        return _commit_plan(conn, plan)

    def _thread_connection(self) -> sqlite3.Connection:
        conn = self._thread_writing
        if conn is None:
            conn = self._thread_writing = _connect(self._database, self._configure_writer)
        return conn

    def _checkpoint_log(self) -> None:
        # PASSIVE copies what no reader still needs into the file and waits for no
        # one; the loop's writer goes on appending meanwhile.
        self._thread_connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

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
            conn = self._raw_reading = _connect(self._database, _configure_reader)
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
        pause, longest = _READ_RETRY_S
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BUSY_TIMEOUT_S
        while True:
            try:
                return call(*args)
            except (OperationalError, sqlite3.OperationalError) as exc:
                if not _busy(exc) or loop.time() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
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

    def _change_threads(
        self, conn: Connection, changes: Mapping[str, ThreadChange]
    ) -> dict[str, int]:
        if len(changes) == 1:
            return super()._change_threads(conn, changes)
        # One executemany and one select instead of an UPDATE ... RETURNING per
        # thread. SQLite's write lock, held since BEGIN IMMEDIATE, keeps the
        # values ours.
        ids = sorted(changes)
        params = [{"thread": i, "n": changes[i].events, "ts": changes[i].updated_at} for i in ids]
        conn.execute(_CHANGE, params)
        last: dict[str, int] = {}
        for start in range(0, len(ids), _IDS_PER_SELECT):
            chunk = ids[start : start + _IDS_PER_SELECT]
            query = select(threads.c.id, threads.c.last_event_id).where(threads.c.id.in_(chunk))
            last.update({str(row.id): int(row.last_event_id) for row in conn.execute(query)})
        return last

    def _database_epoch(self) -> ColumnElement[float]:
        julian_now = func.julianday(literal("now"))
        return (julian_now - _UNIX_EPOCH_JULIAN_DAY) * _SECONDS_PER_DAY

    @staticmethod
    def _dialect_insert(table: Table) -> Any:
        """The database's INSERT, the one with ``on_conflict_do_update``."""
        return insert(table)
