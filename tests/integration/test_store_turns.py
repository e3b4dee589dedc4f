"""An agent's history (``recent_turns``) on every store, with other instances writing too.

The SQLite store answers from a cache of each thread's latest turns, topped up
with what was added since: these tests hold it to the messages the database holds.
"""

from __future__ import annotations

from chatgate.store.base import Store


async def test_history_holds_the_latest_messages_oldest_first(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    for index in range(7):
        role = "user" if index % 2 == 0 else "assistant"
        await store.add_message(thread.id, role, f"m{index}", None)
    assert await store.recent_turns(thread.id, 3) == [
        ("user", "m4"),
        ("assistant", "m5"),
        ("user", "m6"),
    ]
    assert await store.recent_turns(thread.id, 0) == []
    assert [text for _, text in await store.recent_turns(thread.id, 100)] == [
        f"m{i}" for i in range(7)
    ]


async def test_history_after_each_turn_holds_that_turn(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    seen = []
    for index in range(30):
        await store.add_message(thread.id, "user", f"q{index}", None)
        seen.append(await store.recent_turns(thread.id, 4))
        await store.add_message(thread.id, "assistant", f"a{index}", None)
    assert seen[0] == [("user", "q0")]
    assert seen[-1] == [
        ("assistant", "a27"),
        ("user", "q28"),
        ("assistant", "a28"),
        ("user", "q29"),
    ]


async def test_history_holds_what_another_instance_wrote(connect) -> None:  # type: ignore[no-untyped-def]
    one: Store = await connect()
    two: Store = await connect()
    thread = await one.create_thread("alice", "t")
    await one.add_message(thread.id, "user", "from one", None)
    assert await one.recent_turns(thread.id, 10) == [("user", "from one")]
    await two.add_message(thread.id, "assistant", "from two", None)
    await one.add_message(thread.id, "user", "one again", None)
    assert await one.recent_turns(thread.id, 10) == [
        ("user", "from one"),
        ("assistant", "from two"),
        ("user", "one again"),
    ]
    assert await two.recent_turns(thread.id, 2) == [
        ("assistant", "from two"),
        ("user", "one again"),
    ]


async def test_history_of_one_thread_holds_nothing_of_another(store: Store) -> None:
    mine = await store.create_thread("alice", "mine")
    other = await store.create_thread("bob", "other")
    await store.add_message(mine.id, "user", "mine", None)
    await store.recent_turns(mine.id, 5)
    await store.add_message(other.id, "user", "not mine", None)
    await store.add_message(mine.id, "assistant", "still mine", None)
    assert await store.recent_turns(mine.id, 5) == [("user", "mine"), ("assistant", "still mine")]
    assert await store.recent_turns(other.id, 5) == [("user", "not mine")]
