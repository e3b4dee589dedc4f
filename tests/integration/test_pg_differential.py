"""The PostgreSQL store's asyncpg chat path answers exactly as the SQLAlchemy path it replaced.

Two stores on two schemas of the real server: ``PostgresStore`` as shipped, and
the same class with the chat path put back on ``SQLStore``'s SQLAlchemy Core
statements. Hypothesis draws batches of writes (threads, messages, runs
starting and ending, events; with missing threads, duplicate ids and values
the database refuses) and both stores' group-commit writers get the very same
batches; after each batch every read of the chat path is asked of both.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
from chatgate.models import Message, RunRecord, Thread
from chatgate.protocol import timestamp
from chatgate.store.batch import EndedRun, NewEvent, NewMessage, NewRun, NewThread, Write
from chatgate.store.postgres import PostgresStore
from chatgate.store.sql import SQLStore

from databases import postgres_schema

pytestmark = pytest.mark.integration


class SQLAlchemyPath(PostgresStore):
    """The PostgreSQL store with its chat path on SQLAlchemy, as before asyncpg ran it."""

    _write_together = SQLStore._write_together
    get_thread = SQLStore.get_thread
    list_threads = SQLStore.list_threads
    list_messages = SQLStore.list_messages
    recent_turns = SQLStore.recent_turns
    events_after = SQLStore.events_after
    get_run = SQLStore.get_run
    count_running_runs = SQLStore.count_running_runs
    ping = SQLStore.ping


THREADS, RUNS, MESSAGES = 3, 3, 4
OWNERS = ("alice", "bob")
INSTANCES = ("host:1", "host:2")

times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(timestamp)
texts = st.text(max_size=12)
json_values = strategies.json_values(texts, max_leaves=8)
# Titles and message text without NUL: PostgreSQL's text cannot hold one, and the
# gateway never hands a store one (the protocol and the run's answer refuse it).
# Payloads keep it: JSON carries it escaped.
column_texts = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12)
# A few ids past their columns' 64 characters: the database refuses those writes.
thread_ids = st.integers(0, THREADS).map(lambda i: f"th{i}" if i < THREADS else "t" * 70)
run_ids = st.integers(0, RUNS - 1).map(lambda i: f"run{i}")
message_ids = st.integers(0, MESSAGES).map(lambda i: f"m{i}" if i < MESSAGES else "m" * 70)


@st.composite
def writes(draw: st.DrawFn) -> Write:
    kind = draw(st.sampled_from(["thread", "message", "run", "end", "event", "event", "event"]))
    ts = draw(times)
    thread_id = draw(thread_ids)
    if kind == "thread":
        return NewThread(
            Thread(thread_id, draw(st.sampled_from(OWNERS)), draw(column_texts), ts, ts)
        )
    if kind == "message":
        role = draw(st.sampled_from(["user", "assistant"]))
        run_id = draw(st.none() | run_ids)
        return NewMessage(
            Message(draw(message_ids), thread_id, role, draw(column_texts), run_id, ts)
        )
    if kind == "run":
        owner, instance = draw(st.sampled_from(OWNERS)), draw(st.sampled_from(INSTANCES))
        return NewRun(RunRecord(draw(run_ids), thread_id, owner, instance), ts)
    if kind == "end":
        return EndedRun(draw(run_ids), draw(st.sampled_from(["completed", "failed"])), ts)
    payload = draw(st.dictionaries(texts, json_values, max_size=3))
    event_type = draw(st.sampled_from(["agent_started", "agent_thinking", "x" * 40]))
    run_id = draw(st.none() | run_ids)
    return NewEvent(thread_id, run_id, event_type, payload, orjson.dumps(payload).decode(), ts)


batches = st.lists(st.lists(writes(), min_size=1, max_size=12), min_size=1, max_size=4)
# Two threads exist from the start, so that most drawn writes find theirs.
FIRST = [
    NewThread(
        Thread("th0", "alice", "one", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z")
    ),
    NewThread(Thread("th1", "bob", "two", "2026-01-01T00:00:00.001Z", "2026-01-01T00:00:00.001Z")),
]


def answer(result: Any) -> Any:
    """What a caller can tell of a result: an exception by its class (and a LookupError's text)."""
    if isinstance(result, LookupError):
        return ("LookupError", str(result))
    if isinstance(result, Exception):
        return type(result).__name__
    return result


async def reads(store: PostgresStore, scope: str) -> list[Any]:
    """Every read of the chat path, over every id the writes may have used."""
    seen: list[Any] = []
    for i in range(THREADS):
        thread = f"{scope}th{i}"
        seen += [
            await store.list_messages(thread),
            await store.list_messages(thread, limit=2),
            await store.list_messages(thread, before=f"{scope}m1"),
            await store.list_messages(thread, limit=1, before=f"{scope}m2"),
            await store.recent_turns(thread, 3),
            await store.events_after(thread, 0, 100),
            await store.events_after(thread, 2, 2),
        ]
        seen += [await store.get_thread(f"{scope}{owner}", thread) for owner in OWNERS]
    for owner in OWNERS:
        seen.append(await store.list_threads(f"{scope}{owner}"))
        seen += [await store.get_run(f"{scope}{owner}", f"{scope}run{i}") for i in range(RUNS)]
        seen += [
            await store.count_running_runs(f"{scope}{owner}", f"{scope}{i}") for i in INSTANCES
        ]
    # Asked at once, the counts share queries (one per instance asking).
    asks = [(f"{scope}{owner}", f"{scope}{i}") for owner in OWNERS for i in INSTANCES]
    seen.append(await asyncio.gather(*(store.count_running_runs(*ask) for ask in asks)))
    return seen


def scoped(write: Write, scope: str) -> Write:
    """``write`` with every id and owner prefixed by ``scope``: each example has its own rows."""
    if isinstance(write, NewThread):
        t = write.thread
        return NewThread(Thread(scope + t.id, scope + t.owner, t.title, t.created_at, t.updated_at))
    if isinstance(write, NewMessage):
        m = write.message
        run_id = None if m.run_id is None else scope + m.run_id
        moved = Message(scope + m.id, scope + m.thread_id, m.role, m.content, run_id, m.created_at)
        return NewMessage(moved)
    if isinstance(write, NewRun):
        r = write.run
        run = RunRecord(
            scope + r.run_id, scope + r.thread_id, scope + r.owner, scope + r.instance_id
        )
        return NewRun(run, write.ts)
    if isinstance(write, EndedRun):
        return EndedRun(scope + write.run_id, write.status, write.ts)
    run_id = None if write.run_id is None else scope + write.run_id
    return NewEvent(
        scope + write.thread_id, run_id, write.type, write.payload, write.encoded, write.ts
    )


async def written(store: PostgresStore, batch: list[Write]) -> Any:
    """The group commit's writer's answer for ``batch``: each write's, or the whole batch's."""
    try:
        return [answer(result) for result in await store._write(batch)]
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed
        return answer(exc)


async def compare(raw: PostgresStore, old: PostgresStore, drawn: list[list[Write]]) -> None:
    scope = f"x{secrets.token_hex(4)}_"
    for batch in [FIRST, *drawn]:
        writes_ = [scoped(write, scope) for write in batch]
        assert await written(raw, writes_) == await written(old, writes_)
        assert await reads(raw, scope) == await reads(old, scope)


def test_the_asyncpg_path_answers_as_the_sqlalchemy_path() -> None:
    loop = asyncio.new_event_loop()
    try:
        with contextlib.ExitStack() as stack:
            raw_url = loop.run_until_complete(stack.enter_context(_schema(loop)))
            old_url = loop.run_until_complete(stack.enter_context(_schema(loop)))
            raw, old = PostgresStore(raw_url), SQLAlchemyPath(old_url)
            loop.run_until_complete(raw.start())
            loop.run_until_complete(old.start())
            stack.callback(lambda: loop.run_until_complete(old.close()))
            stack.callback(lambda: loop.run_until_complete(raw.close()))

            @settings(
                max_examples=60,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(drawn=batches)
            def check(drawn: list[list[Write]]) -> None:
                loop.run_until_complete(compare(raw, old, drawn))

            check()
    finally:
        loop.close()


@contextlib.contextmanager
def _schema(loop: asyncio.AbstractEventLoop) -> Any:
    """A fresh schema's URL (awaitable), dropped on exit."""
    manager = postgres_schema()
    try:
        yield manager.__aenter__()
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
