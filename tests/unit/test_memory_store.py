"""The in-process store forgets the thread touched longest ago past its bound."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

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


async def test_past_the_event_bound_the_oldest_events_of_the_thread_touched_longest_ago_go() -> (
    None
):
    store = MemoryStore(options=StoreOptions(memory_events=20))
    old = await store.create_thread("alice", "old")
    new = await store.create_thread("alice", "new")
    await store.add_message(old.id, "user", "first", None)
    await store.add_message(new.id, "user", "then", None)
    for n in range(10):
        await store.append_event(old.id, "run_1", "agent_thinking", {"n": n})
    for n in range(10):
        await store.append_event(new.id, "run_2", "agent_thinking", {"n": n})
    assert len(await store.events_after(old.id, 0, 100)) == 10
    # The 21st event is past the bound: a tenth of it goes, and one more,
    # from the thread touched longest ago, oldest first.
    latest = await store.append_event(new.id, "run_2", "agent_thinking", {"n": 10})
    assert latest.event_id == 11
    kept_old = await store.events_after(old.id, 0, 100)
    assert [e.event_id for e in kept_old] == list(range(4, 11))
    assert [e.payload["n"] for e in kept_old] == list(range(3, 10))
    assert [e.event_id for e in await store.events_after(new.id, 0, 100)] == list(range(1, 12))
    # Numbering goes on after what was dropped, and a resume from an id kept is exact.
    following = await store.append_event(old.id, "run_1", "agent_thinking", {"n": 10})
    assert following.event_id == 11
    assert [e.event_id for e in await store.events_after(old.id, 8, 100)] == [9, 10, 11]
    assert [e.event_id for e in await store.events_after(old.id, 2, 2)] == [4, 5]


async def test_past_the_message_bound_the_oldest_messages_go_and_the_history_starts_later() -> None:
    store = MemoryStore(options=StoreOptions(memory_messages=10))
    old = await store.create_thread("alice", "old")
    new = await store.create_thread("alice", "new")
    for n in range(6):
        await store.add_message(old.id, "user", f"old {n}", None)
    for n in range(5):
        await store.add_message(new.id, "user", f"new {n}", None)
    # old was touched before new's messages: it loses its two oldest.
    assert [m.content for m in await store.list_messages(old.id)] == [
        f"old {n}" for n in (2, 3, 4, 5)
    ]
    assert [m.content for m in await store.list_messages(new.id)] == [f"new {n}" for n in range(5)]
    assert await store.recent_turns(old.id, 2) == [("user", "old 4"), ("user", "old 5")]


async def test_a_forgotten_thread_gives_its_events_and_messages_back_to_the_bounds() -> None:
    store = MemoryStore(options=StoreOptions(memory_threads=1, memory_events=10, memory_messages=4))
    gone = await store.create_thread("alice", "gone")
    for n in range(4):
        await store.add_message(gone.id, "user", f"{n}", None)
    for n in range(10):
        await store.append_event(gone.id, None, "agent_thinking", {"n": n})
    kept = await store.create_thread("alice", "kept")
    for n in range(4):
        await store.add_message(kept.id, "user", f"{n}", None)
    for n in range(10):
        await store.append_event(kept.id, None, "agent_thinking", {"n": n})
    # Nothing of "kept" was dropped: the forgotten thread's records no longer count.
    assert len(await store.list_messages(kept.id)) == 4
    assert [e.event_id for e in await store.events_after(kept.id, 0, 100)] == list(range(1, 11))


async def test_a_long_stream_on_one_thread_stays_within_the_bound() -> None:
    store = MemoryStore(options=StoreOptions(memory_events=1000))
    thread = await store.create_thread("alice", "t")
    for n in range(5000):
        await store.append_event(thread.id, "run_1", "agent_text_delta", {"n": n})
    kept = await store.events_after(thread.id, 0, 10_000)
    assert 900 <= len(kept) <= 1000
    assert kept[-1].event_id == 5000
    assert [e.event_id for e in kept] == list(range(5001 - len(kept), 5001))


def test_each_write_s_future_belongs_to_the_loop_that_runs_it() -> None:
    # The store keeps the loop of its last write; a store used by one loop
    # after another must still hand each the futures of its own loop.
    store = MemoryStore()

    async def write() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        thread, created = store.queue_thread("user-a", "t")
        event = store.queue_event(thread.id, None, "agent_thinking", {"text": "x"})
        assert created.get_loop() is event.get_loop()
        assert (await event).thread_id == thread.id
        return asyncio.get_running_loop(), event.get_loop()

    for _ in range(2):
        running, owner = asyncio.run(write())
        assert owner is running
    running, owner = uvloop.run(write())
    assert owner is running


@settings(max_examples=200, deadline=None)
@given(
    bound=st.integers(min_value=1, max_value=5),
    steps=st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=20)), max_size=60),
)
def test_the_threads_kept_are_the_last_touched_whatever_the_order_of_writes(
    bound: int, steps: list[int | None]
) -> None:
    # None creates a thread; a number adds a message to the thread created
    # that many creations ago, when the store still has it. The model keeps
    # thread ids in the order they were last touched.
    async def play() -> None:
        store = MemoryStore(options=StoreOptions(memory_threads=bound))
        created: list[str] = []
        touched: list[str] = []
        for step in steps:
            if step is None:
                thread = await store.create_thread("alice", "t")
                created.append(thread.id)
                touched.append(thread.id)
                del touched[:-bound]
            elif step < len(created) and created[-1 - step] in touched:
                thread_id = created[-1 - step]
                await store.add_message(thread_id, "user", "hi", None)
                touched.remove(thread_id)
                touched.append(thread_id)
            kept = {t.id for t in await store.list_threads("alice")}
            assert kept == set(touched)

    asyncio.run(play())
