"""The PostgreSQL store (``postgresql://user@host:5432/db``), through asyncpg.

For several gateway instances sharing one database. The chat path (the group
commit's batches, and the reads of a turn and of the history API) runs on
asyncpg itself (``store.pg_raw``): one transaction per batch, statements
prepared once per connection. The rest (migrations, instance leases, claims
of orphaned runs) runs SQLAlchemy Core on its asyncio engine, on two small
pools of its own: reads in autocommit, writes one ``run_sync`` transaction
each. Event ids are allocated under the thread rows' locks, taken in
thread-id order so that two instances flushing batches that share threads
cannot deadlock. Concurrent migrators (say, a rolling deploy) are serialized
by an advisory lock.

URL query parameters ``search_path`` and ``application_name`` become
PostgreSQL settings of every connection; the first schema of ``search_path``
is created when missing, so ``?search_path=chatgate`` keeps the tables apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

# Imported here, not only by store.pg_raw, so that an install without the
# postgres extra fails at boot, naming it, however the modules were loaded.
import asyncpg  # noqa: F401
from sqlalchemy import Float, Table, cast, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import URL, Connection, Row, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import ConfigError
from chatgate.models import Message, Role, RunRecord, StoredEvent, Thread
from chatgate.store import pg_statements as sql
from chatgate.store.base import StoreOptions
from chatgate.store.batch import BatchPlan, ThreadChange, Write, Written
from chatgate.store.group_commit import GroupCommit
from chatgate.store.pg_raw import REFUSALS, RawPostgres, Refused
from chatgate.store.schema import (
    dump_json,
    load_json,
    threads,
    unavailable_on_driver_errors,
)
from chatgate.store.sql import SQLStore
from chatgate.store.statements import ALL_ROWS

T = TypeVar("T")

_DRIVER = "postgresql+asyncpg"
_SERVER_SETTINGS = ("search_path", "application_name")
_CONNECT_TIMEOUT_S = 5.0
_COMMAND_TIMEOUT_S = 30.0
_POOL_TIMEOUT_S = 10.0
# SQLAlchemy's pools serve the cold paths only (migrations, leases, claims);
# the chat path has asyncpg pools of its own (see ``store.pg_raw``).
_COLD_POOL_SIZE = 2
_COUNTS_MAX = 256
"""Most users' run counts asked in one query."""
# Any fixed 64-bit number works; every chatgate migrator must use the same one.
_MIGRATION_LOCK = 0x63686174676174

_CHANGE = text(
    "UPDATE threads AS t SET last_event_id = t.last_event_id + v.n,"
    " updated_at = COALESCE(v.ts, t.updated_at)"
    " FROM unnest(CAST(:ids AS text[]), CAST(:ns AS bigint[]), CAST(:ts AS timestamptz[]))"
    " AS v(id, n, ts)"
    " WHERE t.id = v.id RETURNING t.id, t.last_event_id"
)


@contextlib.contextmanager
def _postgres_errors(kind: str, where: str) -> Iterator[None]:
    """As ``unavailable_on_driver_errors``, and a refusal says what the server said.

    The server's message names the database, the role or the client address,
    never a password.
    """
    try:
        with unavailable_on_driver_errors(kind, where):
            yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) not in REFUSALS:
            raise
        said = getattr(exc.orig, "__cause__", None) or exc.orig
        raise Refused(f"PostgreSQL at {where} refused the connection: {said}") from exc


def postgres_url(url: str) -> tuple[URL, dict[str, str]]:
    """The SQLAlchemy URL for asyncpg, and the server settings taken from its query.

    Raises:
        ConfigError: the URL is malformed or names another driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("CHATGATE_DATABASE_URL", "not a valid postgresql:// URL") from None
    if parsed.drivername not in {"postgres", "postgresql", _DRIVER}:
        raise ConfigError("CHATGATE_DATABASE_URL", f"use postgresql:// (driver {_DRIVER})")
    settings = {}
    for name in _SERVER_SETTINGS:
        value = parsed.query.get(name)
        if isinstance(value, str):
            settings[name] = value
        elif value is not None:
            raise ConfigError("CHATGATE_DATABASE_URL", f"{name} is given more than once")
    return parsed.difference_update_query(_SERVER_SETTINGS).set(drivername=_DRIVER), settings


class PostgresStore(SQLStore):
    """The ``Store`` interface on PostgreSQL."""

    kind = "postgresql"

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        engine_url, server_settings = postgres_url(url)
        search_path = server_settings.get("search_path", "")
        self._schema = search_path.split(",")[0].strip().strip('"') or None
        self._server_settings = server_settings
        common: dict[str, Any] = {
            "json_serializer": dump_json,
            "json_deserializer": load_json,
            "pool_pre_ping": True,
            "pool_timeout": _POOL_TIMEOUT_S,
            "connect_args": {
                "timeout": _CONNECT_TIMEOUT_S,
                "command_timeout": _COMMAND_TIMEOUT_S,
                "server_settings": server_settings,
            },
        }
        self._reader = create_async_engine(
            engine_url,
            isolation_level="AUTOCOMMIT",
            pool_size=_COLD_POOL_SIZE,
            max_overflow=0,
            **common,
        )
        self._writer = create_async_engine(
            engine_url, pool_size=_COLD_POOL_SIZE, max_overflow=1, **common
        )
        host, port = engine_url.host or "localhost", engine_url.port or 5432
        self.where = f"{host}:{port}/{engine_url.database or engine_url.username or ''}"
        self._raw = RawPostgres(self.kind, self.where, self._asyncpg_args(engine_url))
        super().__init__(options or StoreOptions())
        # Reads, not writes, batched as the group commit batches: no linger.
        self._counts = GroupCommit[tuple[str, str], int](
            self._count_together, linger_s=0.0, max_items=_COUNTS_MAX
        )

    def _asyncpg_args(self, engine_url: URL) -> dict[str, Any]:
        """What ``asyncpg.connect`` takes for the URL, read as SQLAlchemy's dialect reads it."""
        _, args = self._writer.dialect.create_connect_args(engine_url)
        # Options of SQLAlchemy's adapter, not of asyncpg.
        args["statement_cache_size"] = args.pop("prepared_statement_cache_size", 100)
        args.pop("prepared_statement_name_func", None)
        return {
            **args,
            "timeout": _CONNECT_TIMEOUT_S,
            "command_timeout": _COMMAND_TIMEOUT_S,
            "server_settings": self._server_settings,
        }

    async def start(self) -> None:
        """Connect and apply pending migrations.

        Raises:
            ConfigError: the server refused the connection (no such database or
                role, a wrong password): waiting would not change its answer.
            StoreUnavailable: the server does not answer.
        """
        try:
            await super().start()
            await self._raw.open()
        except Refused as exc:
            raise ConfigError("CHATGATE_DATABASE_URL", str(exc)) from None

    async def ping(self) -> None:
        """Run ``SELECT 1`` on the chat path's connections."""
        await self._raw.fetch("SELECT 1")

    # The chat path, on asyncpg

    async def _write_together(self, batch: Sequence[Write]) -> list[Written | Exception]:
        return await self._raw.write(BatchPlan.of(batch))

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it belongs to ``owner``."""
        rows = await self._raw.fetch(sql.GET_THREAD, thread_id, owner)
        return sql.thread_of(rows[0]) if rows else None

    async def list_threads(self, owner: str) -> list[Thread]:
        """Return ``owner``'s threads, most recently updated first."""
        return [sql.thread_of(row) for row in await self._raw.fetch(sql.LIST_THREADS, owner)]

    async def list_messages(
        self, thread_id: str, limit: int | None = None, before: str | None = None
    ) -> list[Message]:
        """Return a thread's messages, oldest first: the last ``limit`` before ``before``."""
        if limit is None and before is None:
            rows = await self._raw.fetch(sql.LIST_MESSAGES, thread_id)
            return [sql.message_of(row) for row in rows]
        most = limit if limit is not None else ALL_ROWS
        if before is None:
            rows = await self._raw.fetch(sql.RECENT_MESSAGES, thread_id, most)
        else:
            rows = await self._raw.fetch(sql.MESSAGES_BEFORE, thread_id, most, before)
        return [sql.message_of(row) for row in reversed(rows)]

    async def recent_turns(self, thread_id: str, limit: int) -> list[tuple[Role, str]]:
        """The role and text of a thread's most recent ``limit`` messages, oldest first."""
        rows = await self._raw.fetch(sql.RECENT_TURNS, thread_id, limit)
        return [(row[0], row[1]) for row in reversed(rows)]

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events after ``after_event_id``, in order."""
        rows = await self._raw.fetch(sql.EVENTS_AFTER, thread_id, after_event_id, limit)
        return [sql.event_of(row) for row in rows]

    async def get_run(self, owner: str, run_id: str) -> RunRecord | None:
        """Return the run when it belongs to ``owner``."""
        rows = await self._raw.fetch(sql.GET_RUN, run_id, owner)
        return sql.run_of(rows[0]) if rows else None

    async def count_running_runs(self, owner: str, other_than_instance: str) -> int:
        """How many of ``owner``'s runs are running on other instances.

        Asked at every user message when the broker is shared: the asks that
        come while one query runs share the next one.
        """
        with self._guard():
            return await self._counts.submit((owner, other_than_instance))

    async def _count_together(self, asks: list[tuple[str, str]]) -> list[int]:
        """Each ask's count, from one query per instance asking (a process is one)."""
        owners: dict[str, set[str]] = {}
        for owner, instance in asks:
            owners.setdefault(instance, set()).add(owner)
        counts: dict[tuple[str, str], int] = {}
        for instance, these in owners.items():
            for row in await self._raw.fetch(sql.COUNT_RUNNING, list(these), instance):
                counts[row[0], instance] = int(row[1])
        return [counts.get(ask, 0) for ask in asks]

    # The cold paths, on SQLAlchemy

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        return _postgres_errors(self.kind, self.where)

    async def _run_query(self, query: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
        async with self._reader.connect() as conn:
            return list((await conn.execute(query, params)).all())

    async def _run_transaction(self, work: Callable[[Connection], T]) -> T:
        async with self._writer.begin() as conn:
            return await conn.run_sync(work)

    async def _dispose(self) -> None:
        await self._counts.close()
        await self._raw.close()
        await self._writer.dispose()
        await self._reader.dispose()

    def _before_migrations(self, conn: Connection) -> None:
        # Held until the migration transaction ends: instances starting together
        # migrate one after the other, and the later ones find nothing to do.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        if self._schema is not None:
            quoted = conn.dialect.identifier_preparer.quote(self._schema)
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))

    def _change_threads(
        self, conn: Connection, changes: Mapping[str, ThreadChange]
    ) -> dict[str, int]:
        ids = sorted(changes)
        if len(ids) > 1:
            # Lock the rows in id order first; one UPDATE over many rows locks
            # them in whatever order its plan visits them. NO KEY UPDATE is the
            # lock the update takes anyway; unlike FOR UPDATE, it lets other
            # transactions insert rows that refer to the thread.
            conn.execute(
                select(threads.c.id)
                .where(threads.c.id.in_(ids))
                .order_by(threads.c.id)
                .with_for_update(key_share=True)
            )
        times = [changes[i].updated_at for i in ids]
        result = conn.execute(
            _CHANGE,
            {
                "ids": ids,
                "ns": [changes[i].events for i in ids],
                "ts": [None if t is None else datetime.fromisoformat(t) for t in times],
            },
        )
        return {str(row.id): int(row.last_event_id) for row in result}

    def _database_epoch(self) -> ColumnElement[float]:
        return cast(func.extract("epoch", func.clock_timestamp()), Float)

    @staticmethod
    def _dialect_insert(table: Table) -> Any:
        """The database's INSERT, the one with ``on_conflict_do_update``."""
        return insert(table)
