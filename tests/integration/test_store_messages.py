"""The store contract, continued: threads and messages, queued writes, run counts.

The fixtures (one store per backend) are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from chatgate.models import RunRecord
from chatgate.store.base import Store


async def test_a_thread_is_visible_to_its_owner_only(store: Store) -> None:
    thread = await store.create_thread("alice", "hello there")
    assert thread.owner == "alice"
    assert thread.title == "hello there"
    assert await store.get_thread("alice", thread.id) == thread
    assert await store.get_thread("mallory", thread.id) is None
    assert await store.get_thread("alice", "th_missing") is None


async def test_threads_are_listed_per_owner_most_recently_updated_first(store: Store) -> None:
    first = await store.create_thread("alice", "first")
    second = await store.create_thread("alice", "second")
    await store.create_thread("bob", "not alice's")
    await store.add_message(first.id, "user", "bump", None)
    listed = await store.list_threads("alice")
    assert [t.id for t in listed] == [first.id, second.id]
    assert listed[0].updated_at >= listed[0].created_at
    assert await store.list_threads("nobody") == []


async def test_messages_come_back_oldest_first_exactly_as_stored(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    user = await store.add_message(thread.id, "user", "what is 6*7? ✓", "run_1")
    answer = await store.add_message(thread.id, "assistant", "6*7 = 42", "run_1")
    other = await store.create_thread("alice", "other")
    await store.add_message(other.id, "user", "elsewhere", None)
    assert await store.list_messages(thread.id) == [user, answer]
    assert user.role == "user"
    assert answer.run_id == "run_1"


async def test_a_message_for_an_unknown_thread_is_refused(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.add_message("th_missing", "user", "lost", None)


# The event log


async def test_messages_are_paged_from_the_most_recent(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    stored = [await store.add_message(thread.id, "user", f"m{i}", None) for i in range(7)]
    await store.add_message((await store.create_thread("alice", "o")).id, "user", "x", None)
    assert await store.list_messages(thread.id, limit=3) == stored[4:]
    assert await store.list_messages(thread.id, limit=3, before=stored[4].id) == stored[1:4]
    assert await store.list_messages(thread.id, limit=3, before=stored[1].id) == stored[:1]
    assert await store.list_messages(thread.id, before=stored[2].id) == stored[:2]
    assert await store.list_messages(thread.id, limit=100) == stored
    assert await store.list_messages(thread.id, limit=3, before="msg_unknown") == []


async def test_a_message_keeps_the_id_it_was_given(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    given = await store.add_message(thread.id, "assistant", "42", "run_1", message_id="msg_given")
    assert given.id == "msg_given"
    assert await store.list_messages(thread.id) == [given]


async def test_running_runs_are_counted_per_owner_on_other_instances(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    for run_id, owner, instance in [
        ("run_1", "alice", "a"),
        ("run_2", "alice", "b"),
        ("run_3", "alice", "b"),
        ("run_4", "bob", "b"),
    ]:
        await store.record_run(RunRecord(run_id, thread.id, owner, instance))
    await store.finish_run("run_3", "completed")
    assert await store.count_running_runs("alice", "a") == 1
    assert await store.count_running_runs("alice", "b") == 1
    assert await store.count_running_runs("alice", "c") == 2
    assert await store.count_running_runs("carol", "a") == 0
    # Asked at once, as concurrent messages ask: each gets its own count.
    asks = [("alice", "a"), ("bob", "a"), ("alice", "c"), ("carol", "a"), ("bob", "b")]
    counts = await asyncio.gather(*(store.count_running_runs(*ask) for ask in asks))
    assert counts == [1, 1, 2, 0, 0]


async def test_queued_writes_commit_in_the_order_they_were_queued(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    queued = [store.queue_event(thread.id, "run_1", "agent_thinking", {"n": i}) for i in range(5)]
    answer = store.queue_message(thread.id, "assistant", "done", "run_1", "msg_done")
    done = store.queue_event(thread.id, "run_1", "agent_completed", {"text": "done"})
    ids = [(await q).event_id for q in queued]
    assert (await answer).id == "msg_done"
    assert (await done).event_id == ids[-1] + 1
    assert ids == list(range(1, 6))
    assert [m.id for m in await store.list_messages(thread.id)] == ["msg_done"]


async def test_recent_turns_are_the_last_messages_roles_and_texts_oldest_first(
    store: Store,
) -> None:
    thread = await store.create_thread("alice", "t")
    for i in range(5):
        await store.add_message(thread.id, "user" if i % 2 == 0 else "assistant", f"m{i}", None)
    assert await store.recent_turns(thread.id, 3) == [
        ("user", "m2"),
        ("assistant", "m3"),
        ("user", "m4"),
    ]
    assert len(await store.recent_turns(thread.id, 100)) == 5
    assert await store.recent_turns(thread.id, 0) == []
