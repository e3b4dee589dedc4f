"""The SQLite store: one file (``sqlite:///./chatgate.db``), WAL, through aiosqlite.

The default store: nothing to install or run. One process writes at a time
(SQLite has one writer per file), so this process's writes queue on a lock
instead of spinning in SQLite's busy handler; readers never wait, thanks to WAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, event, func, literal, select, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import ConfigError
from chatgate.store import StoreOptions
from chatgate.store_sql import SQLStore, dump_json, instances, load_json, threads

_DRIVER = "sqlite+aiosqlite"
_BUSY_TIMEOUT_MS = 5000
_WAL_RETRY_S = 0.01
_BEGIN_OPTION = "chatgate_sqlite_begin"
_UNIX_EPOCH_JULIAN_DAY = 2440587.5
_SECONDS_PER_DAY = 86400.0
# SQLite allows 32766 parameters a statement; stay far below.
_IDS_PER_SELECT = 1000
_ALLOCATE = (
    update(threads)
    .where(threads.c.id == bindparam("thread"))
    .values(last_event_id=threads.c.last_event_id + bindparam("n"))
)
_PRAGMAS = (
    f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}",
    # In WAL mode NORMAL loses no commit when the process dies (only on power
    # loss or an OS crash), and saves an fsync per commit.
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
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
    if parsed.drivername not in {"sqlite", _DRIVER}:
        raise ConfigError("CHATGATE_DATABASE_URL", f"use sqlite:/// (driver {_DRIVER})")
    database = parsed.database or ""
    if database in {"", ":memory:"}:
        raise ConfigError(
            "CHATGATE_DATABASE_URL", "name a file, as in sqlite:///./chatgate.db (or use memory://)"
        )
    directory = Path(database).expanduser().parent
    if not directory.is_dir():
        raise ConfigError("CHATGATE_DATABASE_URL", f"directory {str(directory)!r} does not exist")
    return parsed.set(drivername=_DRIVER)


def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling begins transactions only before
    # INSERT/UPDATE/DELETE, so DDL (migrations) would commit statement by
    # statement; chatgate emits BEGIN itself instead (see _begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _PRAGMAS:
            cursor.execute(pragma)
        _enable_wal(cursor)
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so), waiting for instances opening it at once.

    The switch needs an exclusive lock, and SQLite answers "database is locked"
    at once there instead of calling the busy handler.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            # This runs in the driver's thread, never on the event loop.
            time.sleep(_WAL_RETRY_S)
        else:
            return


def _begin(conn: Connection) -> None:
    # A write transaction takes the write lock at BEGIN, waiting for it in the
    # busy handler; a deferred one that upgrades later fails at once when
    # another writer got in between.
    mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


class SQLiteStore(SQLStore):
    """The ``Store`` interface on a SQLite file."""

    kind = "sqlite"

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        engine = create_async_engine(
            sqlite_url(url),
            json_serializer=dump_json,
            json_deserializer=load_json,
        )
        event.listen(engine.sync_engine, "connect", _configure_connection)
        event.listen(engine.sync_engine, "begin", _begin)
        super().__init__(engine, options or StoreOptions())
        self._writer = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock, self._writer.begin() as conn:
            yield conn

    async def _allocate_event_ids(
        self, conn: AsyncConnection, counts: Mapping[str, int]
    ) -> dict[str, int]:
        if len(counts) == 1:
            return await super()._allocate_event_ids(conn, counts)
        # Every statement is a trip to aiosqlite's thread: one executemany and
        # one select instead of an UPDATE ... RETURNING per thread. SQLite's
        # write lock, held since the first update, keeps the values ours.
        ids = sorted(counts)
        await conn.execute(_ALLOCATE, [{"thread": i, "n": counts[i]} for i in ids])
        last: dict[str, int] = {}
        for start in range(0, len(ids), _IDS_PER_SELECT):
            chunk = ids[start : start + _IDS_PER_SELECT]
            query = select(threads.c.id, threads.c.last_event_id).where(threads.c.id.in_(chunk))
            last.update({str(row.id): int(row.last_event_id) for row in await conn.execute(query)})
        return last

    def _database_epoch(self) -> ColumnElement[float]:
        julian_now = func.julianday(literal("now"))
        return (julian_now - _UNIX_EPOCH_JULIAN_DAY) * _SECONDS_PER_DAY

    async def _upsert_heartbeat(self, conn: AsyncConnection, instance_id: str) -> None:
        now = self._database_epoch()
        statement = insert(instances).values(instance_id=instance_id, heartbeat_at=now)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[instances.c.instance_id], set_={"heartbeat_at": now}
            )
        )
