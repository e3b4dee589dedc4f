"""The SQLite store's hot path on ``sqlite3`` against SQLAlchemy's, fed the same generated input.

``store.sqlite_rows`` runs the group commit's batch and the turn's reads on
``sqlite3`` itself. The oracle is SQLAlchemy as the store otherwise uses it:
the ``Timestamp`` column's own bind and result processors for times,
``SQLStore._write_plan`` in a transaction of the store's SQLAlchemy writer
for batches, and ``SQLStore``'s read methods (or the statement itself, run
through SQLAlchemy) for reads. Both run on real files, copies of one migrated
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime, create_engine, exc, select, text

import strategies
from chatgate.models import Message, Role, RunRecord, RunStatus, Thread
from chatgate.protocol import timestamp
from chatgate.store import sqlite_connections, sqlite_rows, statements
from chatgate.store.batch import BatchPlan, EndedRun, NewEvent, NewMessage, NewRun, NewThread, Write
from chatgate.store.schema import Timestamp, load_json, metadata
from chatgate.store.sql import SQLStore
from chatgate.store.sqlite import SQLiteStore

# The dialect of an engine as the store creates them, not the hot path's own.
DIALECT = create_engine("sqlite://").dialect
Coder = Callable[[Any], Any]
BIND_TIME = cast("Coder", Timestamp().dialect_impl(DIALECT).bind_processor(DIALECT))
RESULT_TIME = cast("Coder", Timestamp().dialect_impl(DIALECT).result_processor(DIALECT, None))
# What the Timestamp column's DATETIME keeps of a datetime: the text SQLAlchemy writes.
STORE_DATETIME = cast("Coder", DateTime().dialect_impl(DIALECT).bind_processor(DIALECT))

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(call: Callable[[str], Any], value: str) -> tuple[str, Any]:
    """What ``call(value)`` gives, or the class of what it raises."""
    try:
        return ("returned", call(value))
    except Exception as error:  # noqa: BLE001 - the class is the comparison
        return ("raised", type(error))


# Codecs

zones = (
    st.none()
    | st.just(UTC)
    | st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
    )
)
any_moment = st.datetimes(timezones=zones)
stored_shapes = st.one_of(
    st.from_regex(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\Z"),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,7})?\Z"),
    st.from_regex(r"[0-9]{1,5}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}"),
    st.text(max_size=40),
)
protocol_shapes = st.one_of(
    st.from_regex(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z"),
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,7})?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?\Z"
    ),
    st.from_regex(r"[0-9]{1,5}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"),
    st.text(max_size=40),
)


@SETTINGS
@given(any_moment)
def test_stored_time_binds_a_protocol_time_as_the_column_does(moment: datetime) -> None:
    value = timestamp(moment)
    assert outcome(sqlite_rows.stored_time, value) == outcome(BIND_TIME, value)


@SETTINGS
@given(any_moment)
def test_protocol_time_reads_stored_text_as_the_column_does(moment: datetime) -> None:
    stored = STORE_DATETIME(moment)
    expected = RESULT_TIME(stored)
    assert sqlite_rows.protocol_time(stored) == expected
    # And the round trip of every time the gateway writes (timestamp() pads years from 1000).
    if moment.year >= 1000:
        value = timestamp(moment)
        assert sqlite_rows.protocol_time(sqlite_rows.stored_time(value)) == value


@settings(max_examples=300, deadline=None)
@given(protocol_shapes)
def test_stored_time_agrees_on_any_text(value: str) -> None:
    assert outcome(sqlite_rows.stored_time, value) == outcome(BIND_TIME, value)


@settings(max_examples=300, deadline=None)
@given(stored_shapes)
def test_protocol_time_agrees_on_any_text(stored: str) -> None:
    assert outcome(sqlite_rows.protocol_time, stored) == outcome(RESULT_TIME, stored)


@pytest.mark.parametrize(
    "stored",
    ["2026-02-29 00:00:00.000000", "2026-01-01 24:00:00.000000", "0999-01-01 00:00:00.000000"],
)
def test_protocol_time_refuses_or_reads_off_the_fast_path_alike(stored: str) -> None:
    assert outcome(sqlite_rows.protocol_time, stored) == outcome(RESULT_TIME, stored)


# Databases


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database, copied for each example (migrating each one costs seconds)."""
    path = tmp_path_factory.mktemp("sqlite_rows") / "template.db"

    async def migrate() -> None:
        store = SQLiteStore(f"sqlite:///{path}")
        await store.start()
        await store.close()

    asyncio.run(migrate())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def close(store: SQLiteStore) -> None:
    """``SQLiteStore._dispose`` without its event loop: no thread was started."""
    assert store._writer_thread is None
    for conn in (store._reading, store._raw_reading):
        if conn is not None:
            conn.close()
    store._close_writers()
    store._reader.dispose()


@contextlib.contextmanager
def two_copies(template: Path) -> Iterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two stores, each on a copy of ``template``: one for sqlite3, one for SQLAlchemy."""
    with tempfile.TemporaryDirectory(dir=template.parent) as directory:
        stores = []
        for name in ("raw.db", "sqlalchemy.db"):
            shutil.copyfile(template, Path(directory) / name)
            stores.append(SQLiteStore(f"sqlite:///{Path(directory) / name}"))
        try:
            yield stores[0], stores[1]
        finally:
            for store in stores:
                close(store)


def contents(store: SQLiteStore) -> dict[str, Any]:
    """Every table: as SQLAlchemy reads it (ordered by key), and as the text SQLite keeps."""
    engine = create_engine(f"sqlite:///{store._database}", json_deserializer=load_json)
    try:
        with engine.connect() as conn:
            typed = {
                table.name: [
                    tuple(row)
                    for row in conn.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for table in metadata.sorted_tables
            }
            names = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).scalars()
            kept = {
                name: sorted(
                    [
                        tuple((type(v).__name__, v) for v in row)
                        for row in conn.execute(
                            text(f'SELECT * FROM "{name}"')  # noqa: S608 - names from sqlite_master
                        )
                    ],
                    key=repr,
                )
                for name in list(names)
            }
    finally:
        engine.dispose()
    return {"typed": typed, "kept": kept}


# Writes

THREADS = ("th_a", "th_b", "th_c", "th_d")
RUNS = ("run_a", "run_b", "run_c", "run_d", "run_e")
OWNERS = ("alice", "bob")
ROLES: tuple[Role, ...] = ("user", "assistant")
ENDS: tuple[RunStatus, ...] = ("completed", "cancelled", "failed", "interrupted")
KINDS = ("thread", "message", "message", "event", "event", "event", "run", "end")
# Hypothesis bounds datetimes by naive ones; the zone comes from ``timezones``.
EARLIEST_PADDED = datetime(1000, 1, 1)  # noqa: DTZ001
times = st.datetimes(min_value=EARLIEST_PADDED, timezones=zones).map(timestamp)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
json_values = strategies.json_values(texts, max_leaves=6)


def target(draw: st.DrawFn, created: set[str]) -> str:
    """Mostly a thread created earlier in the script (so that logs grow), now and then any."""
    if created and draw(st.integers(0, 4)) > 0:
        return draw(st.sampled_from(sorted(created)))
    return draw(st.sampled_from((*THREADS, "th_missing")))


def new_thread(draw: st.DrawFn, thread_id: str) -> NewThread:
    owner = draw(st.sampled_from(OWNERS))
    return NewThread(Thread(thread_id, owner, draw(texts), draw(times), draw(times)))


@st.composite
def scripts(draw: st.DrawFn) -> list[list[Write]]:
    """Batches of writes in order: some for missing threads, now and then one refused."""
    first = draw(st.lists(st.sampled_from(THREADS), min_size=1, max_size=3, unique=True))
    created = set(first)
    started: set[str] = set()
    messages = 0
    batches: list[list[Write]] = [[new_thread(draw, thread_id) for thread_id in first]]
    for _ in range(draw(st.integers(1, 3))):
        batch = batches[-1] if len(batches) == 1 else []
        for _ in range(draw(st.integers(2, 16))):
            kind = draw(st.sampled_from(KINDS))
            thread_id = target(draw, created)
            refused = draw(st.integers(0, 59)) == 0
            if kind == "thread" and (thread_id not in created or refused):
                created.add(thread_id)
                batch.append(new_thread(draw, thread_id))
            elif kind == "message":
                messages += 1
                role = draw(st.sampled_from(ROLES))
                run_id = draw(st.none() | st.sampled_from(RUNS))
                message = Message(
                    f"msg_{messages}", thread_id, role, draw(texts), run_id, draw(times)
                )
                batch.append(NewMessage(message))
            elif kind == "event":
                payload = draw(st.dictionaries(texts, json_values, max_size=3))
                run_id = draw(st.none() | st.sampled_from(RUNS))
                kind_name = draw(st.sampled_from(["agent_thinking", "agent_completed", "x"]))
                encoded = orjson.dumps(payload).decode()
                batch.append(NewEvent(thread_id, run_id, kind_name, payload, encoded, draw(times)))
            elif kind == "run" and ((thread_id in created and len(started) < len(RUNS)) or refused):
                # A run of a missing thread, or a second start, breaks a key: the batch fails.
                free = [run for run in RUNS if run not in started] or list(RUNS)
                run_id = draw(st.sampled_from(free))
                started.add(run_id)
                record = RunRecord(run_id, thread_id, draw(st.sampled_from(OWNERS)), "inst_1")
                batch.append(NewRun(record, draw(times)))
            elif kind == "end":
                status = draw(st.sampled_from(ENDS))
                batch.append(EndedRun(draw(st.sampled_from(RUNS)), status, draw(times)))
        if batch is not batches[-1]:
            batches.append(batch)
    return batches


def comparable(results: list[Any]) -> list[Any]:
    """Results with each exception as its class and message (exceptions never compare equal)."""
    return [
        (type(r).__name__, str(r)) if isinstance(r, Exception) else (r, repr(r)) for r in results
    ]


def raw_write(store: SQLiteStore, batch: list[Write]) -> tuple[str, Any]:
    try:
        return ("committed", comparable(store._thread_transaction(BatchPlan.of(batch))))
    except sqlite3.Error as error:
        return ("refused", type(error))


def sqlalchemy_write(store: SQLiteStore, batch: list[Write]) -> tuple[str, Any]:
    plan = BatchPlan.of(batch)
    try:
        with store._writer.begin() as conn:
            return ("committed", comparable(SQLStore._write_plan(store, conn, plan)))
    except exc.DBAPIError as error:
        return ("refused", type(error.orig))


def check_script(template: Path, script: list[list[Write]]) -> None:
    with two_copies(template) as (raw, alchemy):
        for batch in script:
            assert raw_write(raw, batch) == sqlalchemy_write(alchemy, batch)
        assert contents(raw) == contents(alchemy)


@SETTINGS
@given(script=scripts())
def test_a_batch_on_sqlite3_writes_what_sqlalchemy_writes(
    template: Path, script: list[list[Write]]
) -> None:
    check_script(template, script)


def event(thread_id: str, n: int) -> NewEvent:
    return NewEvent(
        thread_id, "run_a", "agent_thinking", {"n": n}, f'{{"n":{n}}}', "2026-01-02T03:04:05.678Z"
    )


def thread(thread_id: str) -> NewThread:
    return NewThread(
        Thread(thread_id, "alice", "t", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.001Z")
    )


def test_batches_of_one_and_several_threads_match_and_count_their_events(
    template: Path,
) -> None:
    message = Message("msg_1", "th_b", "user", "hi", None, "2026-01-03T00:00:00.500Z")
    script: list[list[Write]] = [
        [thread("th_a"), thread("th_b"), event("th_a", 1)],
        [
            event("th_a", 2),
            event("th_b", 3),
            NewMessage(message),
            event("th_x", 4),
            event("th_a", 5),
        ],
        [event("th_b", 6)],
    ]
    check_script(template, script)
    with two_copies(template) as (raw, _):
        for batch in script:
            raw_write(raw, batch)
        with contextlib.closing(sqlite3.connect(raw._database)) as conn:
            rows = conn.execute(
                "SELECT id, last_event_id, updated_at FROM threads ORDER BY id"
            ).fetchall()
    assert rows == [
        ("th_a", 3, "2026-01-01 00:00:00.001000"),
        ("th_b", 2, "2026-01-03 00:00:00.500000"),
    ]


# Reads

reads = st.lists(
    st.tuples(
        st.sampled_from((*THREADS, *THREADS, "th_missing")),
        st.sampled_from(OWNERS),
        st.integers(-1, 4),
        st.integers(-1, 8),
    ),
    min_size=1,
    max_size=4,
)


def check_reads(
    store: SQLiteStore, conn: sqlite3.Connection, read: tuple[str, str, int, int]
) -> None:
    """One read of each kind on sqlite3, and through SQLAlchemy as ``SQLStore`` reads."""
    thread_id, owner, after, limit = read

    async def through_sqlalchemy() -> tuple[Any, ...]:
        with store._reader.connect() as alchemy:
            since = alchemy.execute(
                statements.TURNS_SINCE, {"thread": thread_id, "after": after, "limit": limit}
            )
            rows = [tuple(row) for row in since]
        return (
            await SQLStore.recent_turns(store, thread_id, limit),
            await SQLStore.events_after(store, thread_id, after, limit),
            await SQLStore.get_thread(store, owner, thread_id),
            rows,
            # The store's own, through its cache of the latest turns, kept across reads.
            await store.recent_turns(thread_id, limit),
        )

    turns, events, found, since, cached = asyncio.run(through_sqlalchemy())
    assert sqlite_rows.recent_turns(conn, thread_id, limit) == turns
    # The SQLite store, as the in-process one, gives no turn for a limit below one
    # (settings refuse a negative one, which SQLite reads as "no limit").
    assert cached == (turns if limit > 0 else [])
    assert sqlite_rows.turns_since(conn, thread_id, after, limit) == since
    raw_events = sqlite_rows.events_after(conn, thread_id, after, limit)
    assert raw_events == events
    assert [orjson.dumps(e.payload) for e in raw_events] == [
        orjson.dumps(e.payload) for e in events
    ]
    assert sqlite_rows.get_thread(conn, owner, thread_id) == found


@SETTINGS
@given(script=scripts(), reads=st.lists(reads, min_size=3, max_size=3))
def test_reads_on_sqlite3_give_what_the_sqlalchemy_store_gives(
    template: Path, script: list[list[Write]], reads: list[list[tuple[str, str, int, int]]]
) -> None:
    with two_copies(template) as (store, _):
        conn = sqlite_connections.connect(store._database, sqlite_connections.configure_reader)
        with contextlib.closing(conn):
            # Reads between the batches too: the store's turn cache tops itself up.
            for batch, after_batch in zip(script, [*reads, *reads], strict=False):
                sqlalchemy_write(store, batch)
                for read in after_batch:
                    check_reads(store, conn, read)
