"""What the SQL stores share: the tables, the queries, group commit and error mapping.

:class:`SQLStore` implements the ``Store`` interface on SQLAlchemy's asyncio
API; ``store_sqlite`` and ``store_postgres`` add what differs per database (the
engine, allocating event ids, the database clock, locking). The schema itself
is created and changed by the Alembic migrations in ``chatgate.migrations``,
applied by :meth:`SQLStore.start` and by ``chatgate migrate``; the tables here
only describe it for queries.

Event ids are allocated by the database, in the transaction that stores the
events: ``threads.last_event_id`` is raised by the number of new events of the
thread, under the row lock the update takes, so that ids stay unique and dense
even when several processes write to one thread.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import StoreUnavailable
from chatgate.group_commit import GroupCommit, GroupCommitClosed
from chatgate.models import Message, Role, RunRecord, RunStatus, StoredEvent, Thread, new_id
from chatgate.protocol import timestamp
from chatgate.store import StoreOptions

MIGRATIONS = "chatgate:migrations"
VERSION_TABLE = "chatgate_schema_version"
TERMINAL_EVENTS = ("agent_completed", "agent_error")


class Timestamp(TypeDecorator[str]):
    """A UTC time, kept as a timestamp column and seen by Python as the protocol's string."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> datetime | None:
        """Parse ``2026-01-01T00:00:00.000Z`` for the driver."""
        del dialect
        return None if value is None else datetime.fromisoformat(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        """Format what the driver returns (naive means UTC: SQLite keeps no zone)."""
        del dialect
        if value is None:
            return None
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return timestamp(moment.astimezone(UTC))


metadata = MetaData()

threads = Table(
    "threads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("thread_id", String(64), ForeignKey("threads.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("run_id", String(64)),
    Column("created_at", Timestamp, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("thread_id", String(64), ForeignKey("threads.id"), primary_key=True),
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("run_id", String(64)),
    # JSON, not JSONB: the payload is only ever read back whole, and JSON keeps its text as sent.
    Column("payload", JSON(), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("thread_id", String(64), ForeignKey("threads.id"), nullable=False),
    Column("owner", Text, nullable=False),
    Column("instance_id", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp),
)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("heartbeat_at", Float, nullable=False),
)


@contextlib.contextmanager
def unavailable_on_driver_errors(kind: str) -> Iterator[None]:
    """Turn "the database does not answer" into ``StoreUnavailable``; let bugs through.

    The message names the store kind and the error class only: a driver's own
    message can carry SQL, parameters or a connection URL.
    """
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise StoreUnavailable(f"{kind} store unavailable: {type(exc.orig).__name__}") from exc
    except sa_exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise StoreUnavailable(f"{kind} store unavailable: connection lost") from exc
    except (
        sa_exc.DisconnectionError,
        sa_exc.TimeoutError,
        OSError,
        TimeoutError,
        GroupCommitClosed,
    ) as exc:
        raise StoreUnavailable(f"{kind} store unavailable: {type(exc).__name__}") from exc


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event waiting for its id in the group commit."""

    thread_id: str
    run_id: str | None
    type: str
    payload: dict[str, Any] = field(repr=False)
    encoded: str = field(repr=False)
    ts: str


def dump_json(value: Any) -> str:
    """The engines' JSON serializer; a ``str`` is taken as JSON that is already encoded."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def load_json(data: str | bytes) -> Any:
    """The engines' JSON deserializer."""
    return orjson.loads(data)


def upgrade_schema(connection: Connection) -> None:
    """Apply every pending migration on ``connection``, inside its transaction."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class SQLStore:
    """The ``Store`` interface on a SQLAlchemy async engine; subclassed per database."""

    kind = "sql"

    def __init__(self, engine: AsyncEngine, options: StoreOptions) -> None:
        self._engine = engine
        self._events = GroupCommit[NewEvent, StoredEvent](
            self._write_events, linger_s=options.batch_ms / 1000, max_items=options.batch_max
        )

    # Lifecycle

    async def start(self) -> None:
        """Connect and apply pending migrations."""
        with self._guard():
            async with self._transaction() as conn:
                await self._before_migrations(conn)
                await conn.run_sync(upgrade_schema)

    async def close(self) -> None:
        """Write the pending events, then close every connection."""
        await self._events.close()
        await self._engine.dispose()

    async def ping(self) -> None:
        """Run ``SELECT 1``."""
        with self._guard():
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    # Threads and messages

    async def create_thread(self, owner: str, title: str) -> Thread:
        """Create a thread owned by ``owner``."""
        now = timestamp()
        thread = Thread(new_id("th"), owner, title, now, now)
        row = {
            "id": thread.id,
            "owner": owner,
            "title": title,
            "created_at": now,
            "updated_at": now,
            "last_event_id": 0,
        }
        async with self._writing() as conn:
            await conn.execute(threads.insert(), row)
        return thread

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it belongs to ``owner``."""
        query = select(*_THREAD_COLUMNS).where(threads.c.id == thread_id, threads.c.owner == owner)
        rows = await self._read(query)
        return _thread(rows[0]) if rows else None

    async def list_threads(self, owner: str) -> list[Thread]:
        """Return ``owner``'s threads, most recently updated first."""
        query = (
            select(*_THREAD_COLUMNS)
            .where(threads.c.owner == owner)
            .order_by(threads.c.updated_at.desc(), threads.c.id.desc())
        )
        return [_thread(row) for row in await self._read(query)]

    async def add_message(
        self, thread_id: str, role: Role, content: str, run_id: str | None
    ) -> Message:
        """Store a message and touch its thread, in one committed transaction.

        Raises:
            LookupError: no thread ``thread_id`` exists.
        """
        now = timestamp()
        message = Message(new_id("msg"), thread_id, role, content, run_id, now)
        async with self._writing() as conn:
            # The update comes first so that SQLite takes its write lock at once.
            touched = await conn.execute(
                update(threads).where(threads.c.id == thread_id).values(updated_at=now)
            )
            if touched.rowcount == 0:
                raise LookupError(f"no thread {thread_id!r}")
            await conn.execute(
                messages.insert(),
                {
                    "id": message.id,
                    "thread_id": thread_id,
                    "role": role,
                    "content": content,
                    "run_id": run_id,
                    "created_at": now,
                },
            )
        return message

    async def list_messages(self, thread_id: str) -> list[Message]:
        """Return a thread's messages, oldest first."""
        query = (
            select(
                messages.c.id,
                messages.c.thread_id,
                messages.c.role,
                messages.c.content,
                messages.c.run_id,
                messages.c.created_at,
            )
            .where(messages.c.thread_id == thread_id)
            .order_by(messages.c.seq)
        )
        return [Message(*tuple(row)) for row in await self._read(query)]

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
        encoded = orjson.dumps(payload).decode()
        new = NewEvent(thread_id, run_id, kind, payload, encoded, timestamp())
        with self._guard():
            return await self._events.submit(new)

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events after ``after_event_id``, in order."""
        query = (
            select(
                events.c.thread_id,
                events.c.event_id,
                events.c.type,
                events.c.run_id,
                events.c.payload,
                events.c.created_at,
            )
            .where(events.c.thread_id == thread_id, events.c.event_id > after_event_id)
            .order_by(events.c.event_id)
            .limit(limit)
        )
        return [StoredEvent(*tuple(row)) for row in await self._read(query)]

    async def _write_events(self, batch: list[NewEvent]) -> list[StoredEvent | Exception]:
        """The group commit's writer: allocate ids per thread, insert, commit."""
        counts = Counter(event.thread_id for event in batch)
        async with self._writing() as conn:
            last = await self._allocate_event_ids(conn, counts)
            next_id = {
                thread: last[thread] - n + 1 for thread, n in counts.items() if thread in last
            }
            rows: list[dict[str, Any]] = []
            results: list[StoredEvent | Exception] = []
            for event in batch:
                event_id = next_id.get(event.thread_id)
                if event_id is None:
                    results.append(LookupError(f"no thread {event.thread_id!r}"))
                    continue
                next_id[event.thread_id] = event_id + 1
                stored = StoredEvent(
                    event.thread_id, event_id, event.type, event.run_id, event.payload, event.ts
                )
                results.append(stored)
                rows.append(
                    {
                        "thread_id": stored.thread_id,
                        "event_id": event_id,
                        "type": stored.type,
                        "run_id": stored.run_id,
                        "payload": event.encoded,
                        "created_at": stored.ts,
                    }
                )
            if rows:
                await conn.execute(events.insert(), rows)
        return results

    # Runs and instances

    async def record_run(self, run: RunRecord) -> None:
        """Remember a running run."""
        async with self._writing() as conn:
            await conn.execute(
                runs.insert(),
                {
                    "run_id": run.run_id,
                    "thread_id": run.thread_id,
                    "owner": run.owner,
                    "instance_id": run.instance_id,
                    "status": "running",
                    "started_at": timestamp(),
                },
            )

    async def get_run(self, owner: str, run_id: str) -> RunRecord | None:
        """Return the run when it belongs to ``owner``."""
        query = select(
            runs.c.run_id, runs.c.thread_id, runs.c.owner, runs.c.instance_id, runs.c.status
        ).where(runs.c.run_id == run_id, runs.c.owner == owner)
        rows = await self._read(query)
        if not rows:
            return None
        row = rows[0]
        return RunRecord(row.run_id, row.thread_id, row.owner, row.instance_id, status=row.status)

    async def finish_run(self, run_id: str, status: RunStatus) -> None:
        """Mark a running run as ended with ``status``."""
        async with self._writing() as conn:
            await conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id, runs.c.status == "running")
                .values(status=status, finished_at=timestamp())
            )

    async def heartbeat(self, instance_id: str) -> None:
        """Record, by the database's clock, that ``instance_id`` is alive."""
        async with self._writing() as conn:
            await self._upsert_heartbeat(conn, instance_id)

    async def claim_orphaned_runs(
        self, own_instance: str | None, stale_after_s: float | None
    ) -> list[RunRecord]:
        """Mark orphaned runs interrupted and return them; concurrent callers never share one.

        The claim is one ``UPDATE ... WHERE status = 'running'``: of two
        instances claiming at once, the second finds the rows no longer running.
        """
        reasons: list[ColumnElement[bool]] = []
        if own_instance is not None:
            reasons.append(runs.c.instance_id == own_instance)
        if stale_after_s is not None:
            alive = select(instances.c.instance_id).where(
                instances.c.heartbeat_at >= self._database_epoch() - stale_after_s
            )
            reasons.append(runs.c.instance_id.not_in(alive))
        if not reasons:
            return []
        orphaned = or_(*reasons)
        claim = (
            update(runs)
            .where(runs.c.status == "running", orphaned)
            .values(status="interrupted", finished_at=timestamp())
            .returning(runs.c.run_id, runs.c.thread_id, runs.c.owner, runs.c.instance_id)
        )
        async with self._writing() as conn:
            claimed = (await conn.execute(claim)).all()
            ended = await self._runs_with_final_event(conn, claimed)
        return [
            RunRecord(run_id, thread_id, owner, instance, "interrupted", run_id in ended)
            for run_id, thread_id, owner, instance in claimed
        ]

    async def _runs_with_final_event(
        self, conn: AsyncConnection, claimed: Sequence[Row[Any]]
    ) -> set[str]:
        if not claimed:
            return set()
        query = select(events.c.run_id).where(
            events.c.thread_id.in_({row.thread_id for row in claimed}),
            events.c.run_id.in_([row.run_id for row in claimed]),
            events.c.type.in_(TERMINAL_EVENTS),
        )
        return {row.run_id for row in await conn.execute(query)}

    # What each database does its own way

    async def _before_migrations(self, conn: AsyncConnection) -> None:
        """Prepare for migrating (lock out concurrent migrators, create a schema)."""

    async def _allocate_event_ids(
        self, conn: AsyncConnection, counts: Mapping[str, int]
    ) -> dict[str, int]:
        """Raise each thread's ``last_event_id`` by its count; return the new values.

        Threads that do not exist are missing from the answer. This default
        updates one thread at a time, in id order, so concurrent writers lock
        rows in the same order and cannot deadlock.
        """
        last: dict[str, int] = {}
        for thread_id in sorted(counts):
            row = (
                await conn.execute(
                    update(threads)
                    .where(threads.c.id == thread_id)
                    .values(last_event_id=threads.c.last_event_id + counts[thread_id])
                    .returning(threads.c.last_event_id)
                )
            ).first()
            if row is not None:
                last[thread_id] = int(row[0])
        return last

    def _database_epoch(self) -> ColumnElement[float]:
        """The database's clock in seconds since the epoch, so that hosts need not agree."""
        raise NotImplementedError

    async def _upsert_heartbeat(self, conn: AsyncConnection, instance_id: str) -> None:
        raise NotImplementedError

    # Plumbing

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        return unavailable_on_driver_errors(self.kind)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; SQLite overrides it to let one writer in at a time."""
        async with self._engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        with self._guard():
            async with self._transaction() as conn:
                yield conn

    async def _read(self, query: Any) -> list[Row[Any]]:
        with self._guard():
            async with self._engine.connect() as conn:
                return list((await conn.execute(query)).all())


_THREAD_COLUMNS = (
    threads.c.id,
    threads.c.owner,
    threads.c.title,
    threads.c.created_at,
    threads.c.updated_at,
)


def _thread(row: Row[Any]) -> Thread:
    return Thread(*tuple(row))
