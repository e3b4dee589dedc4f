"""The PostgreSQL store's chat path on asyncpg itself: the group commit's batches and hot reads.

SQLAlchemy's asyncio engine costs a greenlet switch, a compiled-statement
lookup and result processing per statement, and a ping per checkout; on the
chat path that was most of the store's CPU. Here a batch is one call, on the
writer's connection in autocommit, of a function in the database that writes
each table with one statement (``pg_statements.WRITE_BATCH``): one round trip
and one transaction, where ``BEGIN``, a statement per table and ``COMMIT``
took one round trip each. Reads run on connections of their own in autocommit,
one statement each, so that a batch never queues behind readers (see
``store.pg_connections``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc

from chatgate.errors import StoreUnavailable
from chatgate.store import pg_statements as sql
from chatgate.store.batch import BatchPlan, Written
from chatgate.store.pg_connections import Connections

_READER_POOL_SIZE = 10
# The group commit writes one batch at a time, and its retries one write at a time.
_WRITER_POOL_SIZE = 1
_POOL_TIMEOUT_S = 10.0
# What the server answers a connection it will not take, whatever the retries:
# no such database, no such role (or no pg_hba.conf entry), a wrong password,
# no CONNECT privilege.
REFUSALS = frozenset({"3D000", "28000", "28P01", "42501"})
# Errors that say the server, or the way to it, is gone; not a statement's fault.
_GONE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


class Refused(StoreUnavailable):
    """The server answered the connection with a refusal (see ``REFUSALS``)."""


class RawPostgres:
    """Two sets of kept asyncpg connections on one database, and the chat path's statements."""

    def __init__(self, kind: str, where: str, connect: Mapping[str, Any]) -> None:
        self._store = f"{kind} store at {where}"
        self._where = where
        self._connect = dict(connect)
        self._reader: Connections | None = None
        self._writer: Connections | None = None

    async def open(self) -> None:
        """Open one connection for reads and one for writes: the database answers."""
        if self._reader is not None:
            return
        reader = Connections(self._open_connection, _READER_POOL_SIZE, _POOL_TIMEOUT_S)
        writer = Connections(self._open_connection, _WRITER_POOL_SIZE, _POOL_TIMEOUT_S)
        with self.errors():
            for connections in (reader, writer):
                async with connections.lend():
                    pass
        self._reader, self._writer = reader, writer

    async def _open_connection(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(**self._connect)
        return conn

    async def close(self) -> None:
        """Close every connection (idle ones at once; lent ones when given back)."""
        for connections in (self._writer, self._reader):
            if connections is not None:
                await connections.close()
        self._writer = self._reader = None

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """As ``schema.unavailable_on_driver_errors``, for asyncpg's own exceptions.

        The message names the store and the error class only: asyncpg's own
        message can carry SQL or parameters. A refusal says what the server
        said, which names the database, the role or the client address, never
        a password. A statement the database refuses raises what SQLAlchemy
        raises for it, so that callers see one error whichever path wrote.
        """
        try:
            yield
        except asyncpg.PostgresError as exc:
            if exc.sqlstate in REFUSALS:
                raise Refused(f"PostgreSQL at {self._where} refused the connection: {exc}") from exc
            if not isinstance(exc, _GONE):
                raise _as_sqlalchemy(exc) from exc
            raise StoreUnavailable(f"{self._store} unavailable: {type(exc).__name__}") from exc
        except _GONE as exc:
            raise StoreUnavailable(f"{self._store} unavailable: {type(exc).__name__}") from exc

    @contextlib.asynccontextmanager
    async def _checkout(self, connections: Connections | None) -> AsyncIterator[asyncpg.Connection]:
        if connections is None:
            raise StoreUnavailable(f"{self._store} unavailable: closed")
        with self.errors():
            async with connections.lend() as conn:
                try:
                    yield conn
                except asyncpg.PostgresError as exc:
                    if conn.is_closed():
                        lost = f"{self._store} unavailable: connection lost"
                        raise StoreUnavailable(lost) from exc
                    raise

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Run one read-only statement in autocommit; return its rows."""
        async with self._checkout(self._reader) as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

    async def write(self, plan: BatchPlan) -> list[Written | Exception]:
        """Write ``plan`` in one statement (one transaction); each write's result once committed."""
        async with self._checkout(self._writer) as conn:
            row = await conn.fetchrow(sql.WRITE_BATCH, *sql.batch_arguments(plan))
        return plan.place(dict(zip(row[0], row[1], strict=True)))


def _as_sqlalchemy(exc: asyncpg.PostgresError) -> sa_exc.DBAPIError:
    """The exception SQLAlchemy's asyncpg dialect raises for ``exc``."""
    kind: type[sa_exc.DBAPIError] = sa_exc.DBAPIError
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        kind = sa_exc.IntegrityError
    elif isinstance(exc, asyncpg.SyntaxOrAccessError):
        kind = sa_exc.ProgrammingError
    elif isinstance(exc, asyncpg.InternalServerError):
        kind = sa_exc.InternalError
    return kind(None, None, exc)
