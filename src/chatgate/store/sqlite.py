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
import functools
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, create_engine, event, func, literal, select, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import URL, Connection, Engine, Row, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import ConfigError
from chatgate.store.base import StoreOptions
from chatgate.store.batch import ThreadChange
from chatgate.store.schema import Timestamp, dump_json, load_json, threads
from chatgate.store.sql import SQLStore

T = TypeVar("T")

_DRIVER = "sqlite+pysqlite"
# aiosqlite was the driver once; URLs naming it keep working.
_DRIVER_NAMES = frozenset({"sqlite", _DRIVER, "sqlite+aiosqlite"})
_BUSY_TIMEOUT_S = 5.0
_WAL_RETRY_S = 0.01
_READ_RETRY_S = (0.001, 0.05)
"""The first and the longest pause between two tries of a read the database found busy."""
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


def _busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


class SQLiteStore(SQLStore):
    """The ``Store`` interface on a SQLite file."""

    kind = "sqlite"

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        target = sqlite_url(url)
        self._reader = _engine(target, _configure_reader)
        synchronous = (options or StoreOptions()).sqlite_synchronous
        self._writer = _engine(target, functools.partial(_configure_writer, synchronous))
        event.listen(self._writer, "begin", _begin)
        # Kept from one read to the next: a checkout and a return to the pool
        # cost as much as the query itself.
        self._reading: Connection | None = None
        # Started by the first write, so that a store never started holds no thread.
        self._writer_thread: ThreadPoolExecutor | None = None
        super().__init__(options or StoreOptions())

    async def _run_query(self, query: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
        pause, longest = _READ_RETRY_S
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BUSY_TIMEOUT_S
        while True:
            try:
                return self._query(query, params)
            except OperationalError as exc:
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
        if self._writer_thread is None:
            self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="chatgate-sqlite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer_thread, self._transaction, work)

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        with self._writer.begin() as conn:
            return work(conn)

    async def _dispose(self) -> None:
        thread, self._writer_thread = self._writer_thread, None
        if thread is not None:
            # Queued behind any transaction still running, so that none is cut short.
            await asyncio.get_running_loop().run_in_executor(thread, self._writer.dispose)
            thread.shutdown(wait=False)
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.close()
        self._reader.dispose()

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
