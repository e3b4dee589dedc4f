"""The SQLite store's hot path on real files: where its commits run, the log's size, other writers.

``tests/unit/test_sqlite_rows.py`` holds the hot path's statements to
SQLAlchemy's; these tests hold the store around them to what the module
``store.sqlite`` promises: FULL commits on the writer's thread and NORMAL ones
on the loop, a log kept short by the periodic checkpoint, and a write that
waits for another process's lock without stopping the event loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import pytest

from chatgate.models import Thread
from chatgate.store import sqlite as sqlite_store
from chatgate.store.base import StoreOptions
from chatgate.store.sqlite import SQLiteStore

Synchronous = Literal["NORMAL", "FULL"]
# A writer in another process: it takes the write lock, says so, and keeps it until told.
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO threads VALUES ('th_other', 'bob', 'x', '2026-01-01 00:00:00.000000',"
             " '2026-01-01 00:00:00.000000', 0)")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Callable[[Synchronous], object]]:
    """Open and start SQLite stores on one file of this test; closed afterwards."""
    stores: list[SQLiteStore] = []

    async def start(synchronous: Synchronous) -> SQLiteStore:
        store = SQLiteStore(
            f"sqlite:///{tmp_path / 'chat.db'}", StoreOptions(sqlite_synchronous=synchronous)
        )
        stores.append(store)
        await store.start()
        return store

    yield start
    for store in stores:
        await store.close()


@pytest.mark.parametrize(
    ("synchronous", "on_thread", "level"), [("NORMAL", False, 1), ("FULL", True, 2)]
)
async def test_commits_run_where_their_durability_says(
    started, synchronous: Synchronous, on_thread: bool, level: int
) -> None:
    store = await started(synchronous)
    thread = await store.create_thread("alice", "t")
    messages = [await store.add_message(thread.id, "user", f"m{i}", "run_1") for i in range(3)]
    appended = await asyncio.gather(
        *(store.append_event(thread.id, "run_1", "agent_thinking", {"n": i}) for i in range(5))
    )
    assert [e.event_id for e in appended] == [1, 2, 3, 4, 5]
    assert await store.events_after(thread.id, 0, 10) == appended
    assert await store.events_after(thread.id, 2, 2) == appended[2:4]
    assert await store.recent_turns(thread.id, 2) == [("user", "m1"), ("user", "m2")]
    assert await store.get_thread("alice", thread.id) == Thread(
        thread.id, "alice", "t", thread.created_at, messages[-1].created_at
    )
    assert await store.get_thread("bob", thread.id) is None
    # FULL commits wait for the disk on the writer's thread; NORMAL ones run on the loop.
    assert (store._thread_writing is not None) is on_thread
    assert (store._loop_writing is not None) is not on_thread
    writing = store._thread_writing or store._loop_writing
    assert writing is not None
    assert writing.execute("PRAGMA synchronous").fetchone() == (level,)


def wal_size(store: SQLiteStore) -> int:
    return Path(f"{store._database}-wal").stat().st_size


async def test_the_periodic_checkpoint_keeps_the_log_short(started) -> None:
    store = await started("NORMAL")
    thread = await store.create_thread("alice", "t")
    empty = wal_size(store)
    for i in range(100):
        await store.append_event(thread.id, None, "agent_thinking", {"n": i})
    # No checkpoint yet: what a commit adds to the log.
    per_commit = (wal_size(store) - empty) / 100
    assert per_commit > 0
    for i in range(100, 600):
        await store.append_event(thread.id, None, "agent_thinking", {"n": i})
        # Each checkpoint is let finish before the next commit: how long one takes
        # (an fsync on a busy disk) is not what this test is about.
        checkpoint = store._checkpoint
        if checkpoint is not None:
            await checkpoint
    # The log restarts after each checkpoint: it holds no more than the commits
    # since the one before the last (601 commits without any).
    assert 2 * sqlite_store._CHECKPOINT_EVERY < 600
    assert wal_size(store) < empty + per_commit * 2 * sqlite_store._CHECKPOINT_EVERY


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_a_write_waits_for_another_process_without_stopping_the_loop(
    started, synchronous: Synchronous
) -> None:
    store = await started(synchronous)
    thread = await store.create_thread("alice", "t")
    locker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCKER,
        store._database,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert locker.stdin is not None
    assert locker.stdout is not None
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert await asyncio.wait_for(locker.stdout.readline(), 10) == b"locked\n"
        write = asyncio.create_task(store.append_event(thread.id, "run_1", "agent_thinking", {}))
        ticks = 0
        await asyncio.sleep(0.3)
        # In WAL mode a reader never waits for the writer, and the loop ran meanwhile.
        assert await asyncio.wait_for(store.get_thread("alice", thread.id), 0.5) == thread
        assert not write.done()
        assert ticks >= 10
    finally:
        locker.stdin.write(b"\n")
        await locker.stdin.drain()
        assert await asyncio.wait_for(locker.wait(), 10) == 0
        ticker.cancel()
    appended = await asyncio.wait_for(write, 5)
    assert appended.event_id == 1
    assert await store.events_after(thread.id, 0, 10) == [appended]
    other = await store.get_thread("bob", "th_other")
    assert other is not None
    assert other.created_at == "2026-01-01T00:00:00.000Z"
