"""The PostgreSQL store (``postgresql://user@host:5432/db``), through asyncpg.

For several gateway instances sharing one database. Statements run through
SQLAlchemy's asyncio engine, on two pools: one for reads, each a single
statement in autocommit mode (no BEGIN, no ROLLBACK), and a small one for
write transactions, each one ``run_sync`` call, so that the group commit's
batch never queues behind a crowd of readers for a connection. Event ids are
allocated under the thread rows' locks, taken in thread-id order so that two
instances flushing batches that share threads cannot deadlock. Concurrent
migrators (say, a rolling deploy) are serialized by an advisory lock.

URL query parameters ``search_path`` and ``application_name`` become
PostgreSQL settings of every connection; the first schema of ``search_path``
is created when missing, so ``?search_path=chatgate`` keeps the tables apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

# The driver SQLAlchemy loads only at the first connection: imported here so
# that an install without the postgres extra fails at boot, naming it.
import asyncpg  # noqa: F401
from sqlalchemy import Float, Table, cast, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import URL, Connection, Row, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import ConfigError, StoreUnavailable
from chatgate.store.base import StoreOptions
from chatgate.store.batch import ThreadChange
from chatgate.store.schema import (
    dump_json,
    load_json,
    threads,
    unavailable_on_driver_errors,
)
from chatgate.store.sql import SQLStore

T = TypeVar("T")

_DRIVER = "postgresql+asyncpg"
_SERVER_SETTINGS = ("search_path", "application_name")
_CONNECT_TIMEOUT_S = 5.0
_COMMAND_TIMEOUT_S = 30.0
_POOL_TIMEOUT_S = 10.0
# Connections are kept, never opened for a burst and closed after it: opening
# one (TLS negotiation, authentication) costs more than many queries.
_READER_POOL_SIZE = 10
# The group commit writes one batch at a time; a heartbeat or a claim may overlap it.
_WRITER_POOL_SIZE = 2
# What the server answers a connection it will not take, whatever the retries:
# no such database, no such role (or no pg_hba.conf entry), a wrong password,
# no CONNECT privilege.
_REFUSALS = frozenset({"3D000", "28000", "28P01", "42501"})
# Any fixed 64-bit number works; every chatgate migrator must use the same one.
_MIGRATION_LOCK = 0x63686174676174

_CHANGE = text(
    "UPDATE threads AS t SET last_event_id = t.last_event_id + v.n,"
    " updated_at = COALESCE(v.ts, t.updated_at)"
    " FROM unnest(CAST(:ids AS text[]), CAST(:ns AS bigint[]), CAST(:ts AS timestamptz[]))"
    " AS v(id, n, ts)"
    " WHERE t.id = v.id RETURNING t.id, t.last_event_id"
)


class _Refused(StoreUnavailable):
    """The server answered the connection with a refusal (see ``_REFUSALS``)."""


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
        if getattr(exc.orig, "sqlstate", None) not in _REFUSALS:
            raise
        said = getattr(exc.orig, "__cause__", None) or exc.orig
        raise _Refused(f"PostgreSQL at {where} refused the connection: {said}") from exc


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
            pool_size=_READER_POOL_SIZE,
            max_overflow=0,
            **common,
        )
        self._writer = create_async_engine(
            engine_url, pool_size=_WRITER_POOL_SIZE, max_overflow=1, **common
        )
        host, port = engine_url.host or "localhost", engine_url.port or 5432
        self.where = f"{host}:{port}/{engine_url.database or engine_url.username or ''}"
        super().__init__(options or StoreOptions())

    async def start(self) -> None:
        """Connect and apply pending migrations.

        Raises:
            ConfigError: the server refused the connection (no such database or
                role, a wrong password): waiting would not change its answer.
            StoreUnavailable: the server does not answer.
        """
        try:
            await super().start()
        except _Refused as exc:
            raise ConfigError("CHATGATE_DATABASE_URL", str(exc)) from None

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        return _postgres_errors(self.kind, self.where)

    async def _run_query(self, query: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
        async with self._reader.connect() as conn:
            return list((await conn.execute(query, params)).all())

    async def _run_transaction(self, work: Callable[[Connection], T]) -> T:
        async with self._writer.begin() as conn:
            return await conn.run_sync(work)

    async def _dispose(self) -> None:
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
