"""Opening the SQLite store's connections: URLs, pragmas, WAL, and "busy" as an error.

Each connection is set up for where it runs: the SQLAlchemy writer (migrations,
leases, claims) and the batch writer of ``FULL`` mode on the store's thread,
waiting in SQLite's busy handler; the reader and the batch writer of ``NORMAL``
mode on the event loop, with no busy handler, so that "busy" comes back at once
and is waited for asynchronously (``SQLiteStore._retry_busy``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from chatgate.errors import ConfigError, StoreUnavailable
from chatgate.store.group_commit import GroupCommitClosed
from chatgate.store.schema import dump_json, load_json, unavailable_on_driver_errors

_DRIVER = "sqlite+pysqlite"
# aiosqlite was the driver once; URLs naming it keep working.
_DRIVER_NAMES = frozenset({"sqlite", _DRIVER, "sqlite+aiosqlite"})
BUSY_TIMEOUT_S = 5.0
_WAL_RETRY_S = 0.01
READ_RETRY_S = (0.001, 0.05)
"""The first and the longest pause between two tries of a read the database found busy."""
_WRITER_PRAGMAS = (
    f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}",
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


def engine(url: URL, configure: Callable[[Any, Any], None]) -> Engine:
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


def configure_writer(synchronous: str, dbapi_connection: Any, _record: Any) -> None:
    """Set up the writer of the store's thread: waits in the busy handler, BEGINs itself."""
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


def configure_reader(dbapi_connection: Any, _record: Any) -> None:
    """Set up a reader on the loop: read-only, and "busy" at once."""
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
    deadline = time.monotonic() + BUSY_TIMEOUT_S
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


def begin(conn: Connection) -> None:
    """Begin the SQLAlchemy writer's transactions with the write lock."""
    # A write transaction takes the write lock at BEGIN, waiting for it in the
    # busy handler; a deferred one that upgrades later fails at once when
    # another writer got in between.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def busy(exc: Exception) -> bool:
    """Whether ``exc`` (from SQLAlchemy or ``sqlite3``) says the database is busy."""
    driver_error = exc.orig if isinstance(exc, OperationalError) else exc
    code = getattr(driver_error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


class Unavailable:
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


def configure_loop_writer(synchronous: str, dbapi_connection: Any, _record: Any) -> None:
    """Set up the batch writer on the loop: "busy" at once, no checkpoint of its own."""
    # Busy means "retry later" (see SQLiteStore._retry_busy), never "sleep on
    # the loop"; checkpoints (an fsync) run on the writer's thread instead.
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _LOOP_WRITER_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA synchronous={synchronous}")
    finally:
        cursor.close()


def connect(database: str, configure: Callable[[Any, Any], None]) -> sqlite3.Connection:
    """A ``sqlite3`` connection in autocommit mode, set up by ``configure``."""
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        configure(conn, None)
    except BaseException:
        conn.close()
        raise
    return conn
