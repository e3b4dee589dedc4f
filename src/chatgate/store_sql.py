"""What the SQL stores share: the tables, the queries, group commit and error mapping.

:class:`SQLStore` implements the ``Store`` interface with SQLAlchemy Core
statements run on synchronous connections; ``store_sqlite`` and
``store_postgres`` say how they run (SQLite: reads on the event loop, writes on
a thread of its own; PostgreSQL: through asyncpg) and add what else differs per
database (allocating event ids, the database clock, locking). The schema itself
is created and changed by the Alembic migrations in ``chatgate.migrations``,
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

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
    bindparam,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import StoreUnavailable
from chatgate.group_commit import GroupCommit, GroupCommitClosed
from chatgate.models import Message, Role, RunRecord, RunStatus, StoredEvent, Thread, new_id
from chatgate.protocol import timestamp
from chatgate.store import StoreOptions

T = TypeVar("T")

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


@dataclass(frozen=True, slots=True)
class NewThread:
    """A thread waiting in the group commit."""

    thread: Thread


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message waiting in the group commit; it also touches its thread."""

    message: Message


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run, starting at ``ts``, waiting in the group commit."""

    run: RunRecord
    ts: str


@dataclass(frozen=True, slots=True)
class EndedRun:
    """The end of a run waiting in the group commit."""

    run_id: str
    status: RunStatus
    ts: str


Write = NewThread | NewMessage | NewRun | EndedRun | NewEvent
"""One store call's write, waiting in the group commit."""
Written = Thread | Message | StoredEvent | None
"""What a write gives its caller back once committed."""


@dataclass(slots=True)
class ThreadChange:
    """What one batch does to a thread's row: new events, and the time of its newest message."""

    events: int = 0
    updated_at: str | None = None


@dataclass(slots=True)
class BatchPlan:
    """A batch of writes sorted into one list of rows per statement, in submission order.

    Built without the database; :meth:`place` then gives the messages and
    events their threads' answer (which threads exist, their new last event
    id) and every write its result.
    """

    writes: Sequence[Write]
    new_threads: list[dict[str, Any]] = field(default_factory=list)
    new_runs: list[dict[str, Any]] = field(default_factory=list)
    ended_runs: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[str, ThreadChange] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, writes: Sequence[Write]) -> BatchPlan:
        """Sort ``writes``; the rows that depend on no thread's answer are ready at once."""
        plan = cls(writes)
        for write in writes:
            if isinstance(write, NewEvent):
                plan._change(write.thread_id).events += 1
            elif isinstance(write, NewMessage):
                plan._change(write.message.thread_id).updated_at = write.message.created_at
            elif isinstance(write, NewThread):
                thread = write.thread
                plan.new_threads.append(
                    {
                        "id": thread.id,
                        "owner": thread.owner,
                        "title": thread.title,
                        "created_at": thread.created_at,
                        "updated_at": thread.updated_at,
                        "last_event_id": 0,
                    }
                )
            elif isinstance(write, NewRun):
                run = write.run
                plan.new_runs.append(
                    {
                        "run_id": run.run_id,
                        "thread_id": run.thread_id,
                        "owner": run.owner,
                        "instance_id": run.instance_id,
                        "status": "running",
                        "started_at": write.ts,
                    }
                )
            else:
                plan.ended_runs.append(
                    {"run": write.run_id, "status": write.status, "ts": write.ts}
                )
        # Rows of one table are updated in key order, so that two instances'
        # batches lock them in the same order and cannot deadlock.
        plan.ended_runs.sort(key=lambda row: str(row["run"]))
        return plan

    def _change(self, thread_id: str) -> ThreadChange:
        change = self.changes.get(thread_id)
        if change is None:
            change = self.changes[thread_id] = ThreadChange()
        return change

    def place(self, last_event_ids: Mapping[str, int]) -> list[Written | Exception]:
        """Fill the message and event rows; return each write's result, in order.

        ``last_event_ids`` holds, for every changed thread that exists, its
        ``last_event_id`` once raised by this batch's events; a message or an
        event for any other thread fails with ``LookupError``.
        """
        next_id = {
            thread: last - self.changes[thread].events + 1
            for thread, last in last_event_ids.items()
            if thread in self.changes
        }
        results: list[Written | Exception] = []
        for write in self.writes:
            if isinstance(write, NewEvent):
                results.append(self._place_event(write, next_id))
            elif isinstance(write, NewMessage):
                results.append(self._place_message(write.message, next_id))
            elif isinstance(write, NewThread):
                results.append(write.thread)
            else:
                results.append(None)
        return results

    def _place_event(self, event: NewEvent, next_id: dict[str, int]) -> StoredEvent | Exception:
        event_id = next_id.get(event.thread_id)
        if event_id is None:
            return LookupError(f"no thread {event.thread_id!r}")
        next_id[event.thread_id] = event_id + 1
        self.events.append(
            {
                "thread_id": event.thread_id,
                "event_id": event_id,
                "type": event.type,
                "run_id": event.run_id,
                "payload": event.encoded,
                "created_at": event.ts,
            }
        )
        return StoredEvent(
            event.thread_id, event_id, event.type, event.run_id, event.payload, event.ts
        )

    def _place_message(self, message: Message, next_id: dict[str, int]) -> Message | Exception:
        if message.thread_id not in next_id:
            return LookupError(f"no thread {message.thread_id!r}")
        self.messages.append(
            {
                "id": message.id,
                "thread_id": message.thread_id,
                "role": message.role,
                "content": message.content,
                "run_id": message.run_id,
                "created_at": message.created_at,
            }
        )
        return message


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
    """The ``Store`` interface in SQLAlchemy Core; subclassed per database.

    A subclass runs what this class builds: :meth:`_run_query` a read,
    :meth:`_run_transaction` a function of a connection inside a write
    transaction, and :meth:`_dispose` closes every connection.
    """

    kind = "sql"

    def __init__(self, options: StoreOptions) -> None:
        self._writes = GroupCommit[Write, Written](
            self._write, linger_s=options.batch_ms / 1000, max_items=options.batch_max
        )

    # Lifecycle

    async def start(self) -> None:
        """Connect and apply pending migrations."""
        await self._transact(self._migrate)

    async def close(self) -> None:
        """Write what is pending, then close every connection."""
        await self._writes.close()
        await self._dispose()

    async def ping(self) -> None:
        """Run ``SELECT 1``."""
        await self._read(_PING)

    # Threads and messages

    async def create_thread(self, owner: str, title: str) -> Thread:
        """Create a thread owned by ``owner``; returns once it is committed."""
        now = timestamp()
        thread = Thread(new_id("th"), owner, title, now, now)
        await self._submit(NewThread(thread))
        return thread

    async def get_thread(self, owner: str, thread_id: str) -> Thread | None:
        """Return the thread when it belongs to ``owner``."""
        rows = await self._read(_GET_THREAD, {"thread": thread_id, "owner": owner})
        return Thread(*tuple(rows[0])) if rows else None

    async def list_threads(self, owner: str) -> list[Thread]:
        """Return ``owner``'s threads, most recently updated first."""
        return [Thread(*tuple(row)) for row in await self._read(_LIST_THREADS, {"owner": owner})]

    async def add_message(
        self, thread_id: str, role: Role, content: str, run_id: str | None
    ) -> Message:
        """Store a message and touch its thread; returns after the group commit holding it.

        Raises:
            LookupError: no thread ``thread_id`` exists.
        """
        message = Message(new_id("msg"), thread_id, role, content, run_id, timestamp())
        await self._submit(NewMessage(message))
        return message

    async def list_messages(self, thread_id: str) -> list[Message]:
        """Return a thread's messages, oldest first."""
        rows = await self._read(_LIST_MESSAGES, {"thread": thread_id})
        return [Message(*tuple(row)) for row in rows]

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
        return cast("StoredEvent", await self._submit(new))

    async def events_after(
        self, thread_id: str, after_event_id: int, limit: int
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events after ``after_event_id``, in order."""
        params = {"thread": thread_id, "after": after_event_id, "limit": limit}
        return [StoredEvent(*tuple(row)) for row in await self._read(_EVENTS_AFTER, params)]

    # Runs and instances

    async def record_run(self, run: RunRecord) -> None:
        """Remember a running run; returns after the group commit holding it."""
        await self._submit(NewRun(run, timestamp()))

    async def get_run(self, owner: str, run_id: str) -> RunRecord | None:
        """Return the run when it belongs to ``owner``."""
        rows = await self._read(_GET_RUN, {"run": run_id, "owner": owner})
        if not rows:
            return None
        row = rows[0]
        return RunRecord(row.run_id, row.thread_id, row.owner, row.instance_id, status=row.status)

    async def finish_run(self, run_id: str, status: RunStatus) -> None:
        """Mark a running run as ended with ``status``; returns after the group commit."""
        await self._submit(EndedRun(run_id, status, timestamp()))

    async def heartbeat(self, instance_id: str) -> None:
        """Record, by the database's clock, that ``instance_id`` is alive."""
        await self._transact(lambda conn: self._upsert_heartbeat(conn, instance_id))

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
        # Locked in id order, as the group commit's batches lock the runs they
        # end, so that a claim and a batch cannot deadlock.
        orphaned = (
            select(runs.c.run_id)
            .where(runs.c.status == "running", or_(*reasons))
            .order_by(runs.c.run_id)
            .with_for_update(key_share=True)
        )
        claim = (
            update(runs)
            .where(runs.c.status == "running", runs.c.run_id.in_(orphaned.scalar_subquery()))
            .values(status="interrupted", finished_at=timestamp())
            .returning(runs.c.run_id, runs.c.thread_id, runs.c.owner, runs.c.instance_id)
        )
        return await self._transact(lambda conn: _claim(conn, claim))

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
            conn.execute(_END_RUN, plan.ended_runs)
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

    def _upsert_heartbeat(self, conn: Connection, instance_id: str) -> None:
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


def _claim(conn: Connection, claim: Executable) -> list[RunRecord]:
    """Run the claim; tell each claimed run whether its log already holds its final event."""
    claimed = conn.execute(claim).all()
    ended: set[str] = set()
    if claimed:
        query = select(events.c.run_id).where(
            events.c.thread_id.in_({row.thread_id for row in claimed}),
            events.c.run_id.in_([row.run_id for row in claimed]),
            events.c.type.in_(TERMINAL_EVENTS),
        )
        ended = {row.run_id for row in conn.execute(query)}
    return [
        RunRecord(run_id, thread_id, owner, instance, "interrupted", run_id in ended)
        for run_id, thread_id, owner, instance in claimed
    ]


# Statements built once: building and hashing a statement costs more than running it.

_PING = text("SELECT 1")

_THREAD_COLUMNS = (
    threads.c.id,
    threads.c.owner,
    threads.c.title,
    threads.c.created_at,
    threads.c.updated_at,
)

_GET_THREAD = select(*_THREAD_COLUMNS).where(
    threads.c.id == bindparam("thread"), threads.c.owner == bindparam("owner")
)

_LIST_THREADS = (
    select(*_THREAD_COLUMNS)
    .where(threads.c.owner == bindparam("owner"))
    .order_by(threads.c.updated_at.desc(), threads.c.id.desc())
)

_LIST_MESSAGES = (
    select(
        messages.c.id,
        messages.c.thread_id,
        messages.c.role,
        messages.c.content,
        messages.c.run_id,
        messages.c.created_at,
    )
    .where(messages.c.thread_id == bindparam("thread"))
    .order_by(messages.c.seq)
)

_EVENTS_AFTER = (
    select(
        events.c.thread_id,
        events.c.event_id,
        events.c.type,
        events.c.run_id,
        events.c.payload,
        events.c.created_at,
    )
    .where(events.c.thread_id == bindparam("thread"), events.c.event_id > bindparam("after"))
    .order_by(events.c.event_id)
    .limit(bindparam("limit"))
)

_GET_RUN = select(
    runs.c.run_id, runs.c.thread_id, runs.c.owner, runs.c.instance_id, runs.c.status
).where(runs.c.run_id == bindparam("run"), runs.c.owner == bindparam("owner"))

_END_RUN = (
    update(runs)
    .where(runs.c.run_id == bindparam("run"), runs.c.status == "running")
    .values(status=bindparam("status"), finished_at=bindparam("ts", type_=Timestamp()))
)
