"""The in-process store forgets the thread touched longest ago past its bound."""

from __future__ import annotations

import pytest

from chatgate.models import RunRecord
from chatgate.store.base import StoreOptions
from chatgate.store.memory import MemoryStore


async def test_past_the_bound_the_thread_touched_longest_ago_is_forgotten_whole() -> None:
    store = MemoryStore(options=StoreOptions(memory_threads=2))
    first = await store.create_thread("alice", "first")
    second = await store.create_thread("alice", "second")
    await store.add_message(first.id, "user", "still here", "run_1")
    await store.append_event(second.id, "run_2", "agent_thinking", {})
    await store.record_run(RunRecord("run_2", second.id, "alice", "host"))
    await store.finish_run("run_2", "completed")
    third = await store.create_thread("alice", "third")

    assert await store.get_thread("alice", second.id) is None
    assert await store.events_after(second.id, 0, 10) == []
    assert await store.get_run("alice", "run_2") is None
    kept = {t.id for t in await store.list_threads("alice")}
    assert kept == {first.id, third.id}
    assert [m.content for m in await store.list_messages(first.id)] == ["still here"]


async def test_a_running_run_outlives_its_forgotten_thread_until_it_ends() -> None:
    store = MemoryStore(options=StoreOptions(memory_threads=1))
    first = await store.create_thread("alice", "first")
    await store.record_run(RunRecord("run_1", first.id, "alice", "host"))
    await store.create_thread("alice", "second")
    assert await store.get_run("alice", "run_1") is not None
    with pytest.raises(LookupError):
        await store.append_event(first.id, "run_1", "agent_thinking", {})
