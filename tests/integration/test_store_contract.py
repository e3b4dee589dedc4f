"""One suite over every store: what the gateway may rely on, whichever backend.

PostgreSQL is the real server at 127.0.0.1:5432 (database ``test``), each test
in a schema of its own; SQLite a file per test. Two store objects on one
database are two gateway instances.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import pytest

from chatgate.errors import StoreUnavailable
from chatgate.models import RunRecord, StoredEvent
from chatgate.store.base import InstanceLease, Store, open_store


def ids(events: list[StoredEvent]) -> list[int]:
    return [e.event_id for e in events]


# Threads and messages


async def test_event_ids_rise_by_one_per_thread(store: Store) -> None:
    one = await store.create_thread("alice", "one")
    two = await store.create_thread("alice", "two")
    first = [
        await store.append_event(one.id, "run_1", "agent_thinking", {"n": i}) for i in range(3)
    ]
    other = await store.append_event(two.id, "run_2", "agent_started", {"agent": "demo"})
    assert ids(first) == [1, 2, 3]
    assert other.event_id == 1
    assert first[0].thread_id == one.id
    assert first[0].run_id == "run_1"
    assert first[0].type == "agent_thinking"


async def test_a_queued_thread_is_committed_with_the_writes_queued_after_it(store: Store) -> None:
    batches: list[int] = []
    writes = getattr(store, "_writes", None)
    if writes is not None:
        writes.observer = lambda _seconds, items: batches.append(items)
    thread, written = store.queue_thread("alice", "first words")
    queued = store.queue_message(thread.id, "user", "first words", "run_1")
    recorded = store.queue_run(RunRecord("run_1", thread.id, "alice", "host"))
    await written
    message = await queued
    await recorded
    found = await store.get_thread("alice", thread.id)
    assert found is not None
    assert (found.id, found.owner, found.title) == (thread.id, "alice", "first words")
    assert await store.get_thread("bob", thread.id) is None
    assert [m.id for m in await store.list_messages(thread.id)] == [message.id]
    run = await store.get_run("alice", "run_1")
    assert run is not None
    assert run.thread_id == thread.id
    if writes is not None:
        # The thread, its first message and the run: one transaction.
        assert batches == [3]


async def test_a_run_end_queued_after_its_final_event_shares_its_commit(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    await store.record_run(RunRecord("run_1", thread.id, "alice", "host"))
    assert await store.count_running_runs("alice", "elsewhere") == 1
    batches: list[int] = []
    writes = getattr(store, "_writes", None)
    if writes is not None:
        writes.observer = lambda _seconds, items: batches.append(items)
    final = store.queue_event(thread.id, "run_1", "agent_completed", {"text": "42"})
    ended = store.queue_run_end("run_1", "completed")
    assert (await final).event_id == 1
    await ended
    run = await store.get_run("alice", "run_1")
    assert run is not None
    assert run.status == "completed"
    assert await store.count_running_runs("alice", "elsewhere") == 0
    if writes is not None:
        assert batches == [2]


async def test_a_queued_thread_on_a_closed_store_fails_when_awaited(store: Store) -> None:
    if store.kind == "memory":
        pytest.skip("the in-process store refuses nothing it is given")
    await store.close()
    _, written = store.queue_thread("alice", "t")
    with pytest.raises(StoreUnavailable):
        await written


async def test_stored_events_read_back_exactly_as_appended(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    payload = {
        "text": 'héllo \u2603 "quoted"',
        "zeta": 1,
        "alpha": [1.5, -2, None, True],
        "nested": {"b": {"c": "d"}, "a": 2**53},
    }
    appended = [
        await store.append_event(thread.id, "run_1", "tool_completed", payload),
        await store.append_event(thread.id, None, "agent_error", {}),
    ]
    read = await store.events_after(thread.id, 0, 10)
    assert read == appended
    assert list(read[0].payload) == ["text", "zeta", "alpha", "nested"]
    assert read[1].run_id is None
    assert read[0].ts.endswith("Z")


async def test_events_after_pages_through_the_log(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    for i in range(7):
        await store.append_event(thread.id, "run_1", "agent_thinking", {"n": i})
    assert ids(await store.events_after(thread.id, 0, 3)) == [1, 2, 3]
    assert ids(await store.events_after(thread.id, 3, 3)) == [4, 5, 6]
    assert ids(await store.events_after(thread.id, 6, 3)) == [7]
    assert await store.events_after(thread.id, 7, 3) == []
    assert await store.events_after("th_missing", 0, 3) == []


async def test_concurrent_appends_to_one_thread_get_unique_dense_ids(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    appended = await asyncio.gather(
        *(
            store.append_event(thread.id, f"run_{i % 3}", "agent_thinking", {"n": i})
            for i in range(200)
        )
    )
    assert sorted(ids(appended)) == list(range(1, 201))
    read = await store.events_after(thread.id, 0, 500)
    assert ids(read) == list(range(1, 201))
    assert {(e.event_id, e.payload["n"]) for e in read} == {
        (e.event_id, e.payload["n"]) for e in appended
    }


async def test_concurrent_appends_across_threads_stay_per_thread(store: Store) -> None:
    threads = [await store.create_thread("alice", f"t{i}") for i in range(20)]

    async def run(thread_id: str) -> list[int]:
        return [
            (await store.append_event(thread_id, "run", "agent_thinking", {})).event_id
            for _ in range(10)
        ]

    results = await asyncio.gather(*(run(t.id) for t in threads))
    assert results == [list(range(1, 11))] * 20


async def test_an_event_for_an_unknown_thread_fails_alone(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    results = await asyncio.gather(
        store.append_event(thread.id, "run", "agent_thinking", {"n": 1}),
        store.append_event("th_missing", "run", "agent_thinking", {}),
        store.append_event(thread.id, "run", "agent_thinking", {"n": 2}),
        return_exceptions=True,
    )
    assert isinstance(results[1], LookupError)
    assert [r.event_id for r in (results[0], results[2])] == [1, 2]
    assert ids(await store.events_after(thread.id, 0, 10)) == [1, 2]


async def test_a_payload_that_is_not_json_fails_alone(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    results = await asyncio.gather(
        store.append_event(thread.id, "run", "agent_thinking", {"n": 1}),
        store.append_event(thread.id, "run", "agent_thinking", {"bad": object()}),
        store.append_event(thread.id, "run", "agent_thinking", {"n": 2}),
        return_exceptions=True,
    )
    assert isinstance(results[1], TypeError)
    assert ids(await store.events_after(thread.id, 0, 10)) == [1, 2]


async def test_tiny_batches_keep_every_event(connect) -> None:
    store = await connect(batch_max=1, batch_ms=0)
    thread = await store.create_thread("alice", "t")
    appended = await asyncio.gather(
        *(store.append_event(thread.id, "run", "agent_thinking", {"n": i}) for i in range(30))
    )
    assert sorted(ids(appended)) == list(range(1, 31))


# Several instances on one database


async def test_two_instances_writing_to_one_thread_get_unique_dense_ids(connect) -> None:
    one, two = await connect(), await connect()
    thread = await one.create_thread("alice", "t")

    async def writer(store: Store, name: str) -> list[StoredEvent]:
        return [await store.append_event(thread.id, name, "agent_thinking", {}) for _ in range(40)]

    a, b, c = await asyncio.gather(writer(one, "a"), writer(two, "b"), writer(two, "c"))
    everything = ids(a) + ids(b) + ids(c)
    assert sorted(everything) == list(range(1, 121))
    for run in (a, b, c):
        assert ids(run) == sorted(ids(run))
    assert ids(await one.events_after(thread.id, 0, 200)) == list(range(1, 121))


async def test_what_one_instance_stores_the_next_one_reads(connect, url: str) -> None:
    if url == "memory://":
        pytest.skip("the in-process store keeps nothing for another process")
    first = await connect()
    thread = await first.create_thread("alice", "kept")
    message = await first.add_message(thread.id, "user", "remember me", "run_1")
    event = await first.append_event(thread.id, "run_1", "agent_started", {"agent": "demo"})
    await first.close()

    later = open_store(url)
    await later.start()
    try:
        kept = await later.get_thread("alice", thread.id)
        assert kept is not None
        assert (kept.title, kept.created_at, kept.updated_at) == (
            "kept",
            thread.created_at,
            message.created_at,
        )
        assert await later.list_messages(thread.id) == [message]
        assert await later.events_after(thread.id, 0, 10) == [event]
        following = await later.append_event(thread.id, "run_2", "agent_started", {})
        assert following.event_id == 2
    finally:
        await later.close()


async def test_starting_again_and_concurrently_migrates_once(connect) -> None:
    stores = await asyncio.gather(connect(), connect(), connect())
    await stores[0].start()
    thread = await stores[1].create_thread("alice", "t")
    assert await stores[2].get_thread("alice", thread.id) == thread


# Runs


def run_record(thread_id: str, instance: str, run_id: str = "run_x") -> RunRecord:
    return RunRecord(run_id, thread_id, "alice", instance)


async def test_an_instance_starting_again_claims_its_running_runs(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    await store.heartbeat("host:1")
    await store.record_run(run_record(thread.id, "host:1", "run_a"))
    await store.record_run(run_record(thread.id, "host:1", "run_done"))
    await store.record_run(run_record(thread.id, "host:2", "run_elsewhere"))
    await store.heartbeat("host:2")
    await store.finish_run("run_done", "completed")

    claimed = await store.claim_orphaned_runs(["host:1"], None)
    assert claimed == [
        RunRecord("run_a", thread.id, "alice", "host:1", status="interrupted", ended=False)
    ]
    assert await store.claim_orphaned_runs(["host:1"], None) == []
    assert [i.instance_id for i in await store.list_instances()] == ["host:2"]


async def test_runs_of_an_instance_without_heartbeat_are_claimed(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    await store.heartbeat("alive:1")
    await store.record_run(run_record(thread.id, "alive:1", "run_live"))
    await store.record_run(run_record(thread.id, "gone:1", "run_orphan"))

    assert await store.claim_orphaned_runs((), None) == []
    claimed = await store.claim_orphaned_runs((), 60.0)
    assert [r.run_id for r in claimed] == ["run_orphan"]
    # A heartbeat from the future is impossible: with a negative bound every
    # instance is stale, the live one too.
    assert [r.run_id for r in await store.claim_orphaned_runs((), -60.0)] == ["run_live"]


async def test_a_lease_says_who_holds_it_and_how_long_it_has_been_silent(store: Store) -> None:
    lease = InstanceLease("gw-a/1f2e", "gw-a", True, "host ns", 4242)
    await store.register_instance(lease)
    await store.heartbeat("gw-b/9c8d")
    listed = {i.instance_id: i for i in await store.list_instances()}
    assert set(listed) == {"gw-a/1f2e", "gw-b/9c8d"}
    assert dataclasses.replace(listed["gw-a/1f2e"], silent_s=0.0) == lease
    assert listed["gw-b/9c8d"].base is None
    assert all(0.0 <= i.silent_s < 3600 for i in listed.values())
    await store.heartbeat("gw-a/1f2e")
    assert (await store.list_instances())[0].pid == 4242
    await store.release_instance("gw-a/1f2e")
    assert [i.instance_id for i in await store.list_instances()] == ["gw-b/9c8d"]


async def test_a_claimed_run_tells_whether_its_log_already_ended(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    for run_id, final in (("run_ended", "agent_completed"), ("run_cut", None)):
        await store.record_run(run_record(thread.id, "host:1", run_id))
        await store.append_event(thread.id, run_id, "agent_started", {})
        if final is not None:
            await store.append_event(thread.id, run_id, final, {})
    claimed = {r.run_id: r.ended for r in await store.claim_orphaned_runs(["host:1"], None)}
    assert claimed == {"run_ended": True, "run_cut": False}


async def test_concurrent_claims_never_share_a_run(connect) -> None:
    one, two = await connect(), await connect()
    thread = await one.create_thread("alice", "t")
    for i in range(20):
        await one.record_run(run_record(thread.id, "dead:1", f"run_{i}"))
    first, second = await asyncio.gather(
        one.claim_orphaned_runs((), 30.0), two.claim_orphaned_runs((), 30.0)
    )
    claimed = [r.run_id for r in first + second]
    assert sorted(claimed) == sorted(f"run_{i}" for i in range(20))


async def test_ping_answers(store: Store) -> None:
    await store.ping()


async def test_appending_after_close_is_store_unavailable(url: str) -> None:
    if url == "memory://":
        pytest.skip("the in-process store has nothing to close")
    store = open_store(url)
    await store.start()
    thread = await store.create_thread("alice", "t")
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.append_event(thread.id, "run", "agent_thinking", {})


# Many writers at once: the group commit shares transactions between callers


async def chat_turn(store: Store, owner: str, index: int) -> tuple[str, str]:
    """The store calls of one chat round trip, in the gateway's order; (thread id, run id)."""
    thread = await store.create_thread(owner, f"turn {index}")
    assert await store.list_messages(thread.id) == []
    run_id = f"run_{owner}_{index}"
    user = await store.add_message(thread.id, "user", f"question {index}", run_id)
    assert await store.list_messages(thread.id) == [user]
    await store.record_run(RunRecord(run_id, thread.id, owner, "host:1"))
    for kind in ("agent_started", "agent_thinking", "agent_completed"):
        await store.append_event(thread.id, run_id, kind, {"turn": index})
    await store.add_message(thread.id, "assistant", f"answer {index}", run_id)
    await store.finish_run(run_id, "completed")
    return thread.id, run_id


async def test_concurrent_chat_turns_each_keep_their_own_writes(store: Store) -> None:
    owners = [f"user{i}" for i in range(30)]
    done = await asyncio.gather(*(chat_turn(store, owner, i) for i, owner in enumerate(owners)))
    for index, (owner, (thread_id, run_id)) in enumerate(zip(owners, done, strict=True)):
        kept = await store.get_thread(owner, thread_id)
        assert kept is not None
        assert kept.title == f"turn {index}"
        said = await store.list_messages(thread_id)
        assert [(m.role, m.content, m.run_id) for m in said] == [
            ("user", f"question {index}", run_id),
            ("assistant", f"answer {index}", run_id),
        ]
        assert kept.updated_at == said[-1].created_at
        logged = await store.events_after(thread_id, 0, 10)
        assert [(e.event_id, e.type, e.payload) for e in logged] == [
            (1, "agent_started", {"turn": index}),
            (2, "agent_thinking", {"turn": index}),
            (3, "agent_completed", {"turn": index}),
        ]
        run = await store.get_run(owner, run_id)
        assert run is not None
        assert (run.thread_id, run.status) == (thread_id, "completed")


async def test_a_write_for_an_unknown_thread_fails_alone_among_others(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    results = await asyncio.gather(
        store.create_thread("bob", "new"),
        store.add_message("th_missing", "user", "lost", None),
        store.add_message(thread.id, "user", "kept", "run_1"),
        store.append_event("th_missing", "run_1", "agent_started", {}),
        store.record_run(run_record(thread.id, "host:1", "run_1")),
        store.append_event(thread.id, "run_1", "agent_started", {}),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == [
        "Thread",
        "LookupError",
        "Message",
        "LookupError",
        "NoneType",
        "StoredEvent",
    ]
    assert [m.content for m in await store.list_messages(thread.id)] == ["kept"]
    assert ids(await store.events_after(thread.id, 0, 10)) == [1]
    assert await store.get_thread("bob", results[0].id) == results[0]  # type: ignore[union-attr]
    run = await store.get_run("alice", "run_1")
    assert run is not None
    assert run.status == "running"


async def test_a_write_the_database_refuses_fails_alone(store: Store, url: str) -> None:
    if url == "memory://":
        pytest.skip("the in-process store refuses nothing it is given")
    thread = await store.create_thread("alice", "t")
    await store.record_run(run_record(thread.id, "host:1", "run_taken"))
    results = await asyncio.gather(
        store.add_message(thread.id, "user", "before", None),
        store.record_run(run_record(thread.id, "host:1", "run_taken")),
        store.append_event(thread.id, "run_taken", "agent_started", {}),
        store.record_run(run_record(thread.id, "host:1", "run_new")),
        return_exceptions=True,
    )
    assert type(results[1]).__name__ == "IntegrityError"
    assert not isinstance(results[1], StoreUnavailable)
    assert [type(r).__name__ for r in (results[0], results[2], results[3])] == [
        "Message",
        "StoredEvent",
        "NoneType",
    ]
    assert [m.content for m in await store.list_messages(thread.id)] == ["before"]
    assert ids(await store.events_after(thread.id, 0, 10)) == [1]
    assert await store.get_run("alice", "run_new") is not None


async def test_a_run_ends_once_even_when_two_ends_share_a_batch(store: Store) -> None:
    thread = await store.create_thread("alice", "t")
    await store.record_run(run_record(thread.id, "host:1", "run_1"))
    await asyncio.gather(
        store.finish_run("run_1", "completed"), store.finish_run("run_1", "failed")
    )
    await store.finish_run("run_1", "cancelled")
    run = await store.get_run("alice", "run_1")
    assert run is not None
    assert run.status == "completed"


async def test_two_instances_writing_turns_to_the_same_threads(connect) -> None:
    one, two = await connect(), await connect()
    threads = [await one.create_thread("alice", f"t{i}") for i in range(8)]

    async def writer(store: Store, order: list[str], name: str) -> None:
        for thread_id in order:
            await asyncio.gather(
                store.add_message(thread_id, "user", name, None),
                store.append_event(thread_id, name, "agent_thinking", {}),
            )

    forward = [t.id for t in threads]
    # Opposite orders, batches of many threads each: the locks must not deadlock.
    await asyncio.gather(
        *(writer(one, forward, f"a{i}") for i in range(3)),
        *(writer(two, forward[::-1], f"b{i}") for i in range(3)),
    )
    for thread in threads:
        assert ids(await two.events_after(thread.id, 0, 10)) == [1, 2, 3, 4, 5, 6]
        assert sorted(m.content for m in await one.list_messages(thread.id)) == [
            "a0",
            "a1",
            "a2",
            "b0",
            "b1",
            "b2",
        ]


async def test_sqlite_waits_for_another_process_without_stopping_the_loop(
    url: str, opened: list[Store]
) -> None:
    if not url.startswith("sqlite"):
        pytest.skip("only SQLite locks the whole file")
    first = open_store(url)
    await first.start()
    thread = await first.create_thread("alice", "t")
    await first.close()
    other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        # Back to a rollback journal, where a writer's EXCLUSIVE lock shuts out readers too.
        other.execute("PRAGMA journal_mode=DELETE")
        other.execute("BEGIN EXCLUSIVE")
        store = open_store(url)
        opened.append(store)
        read = asyncio.create_task(store.get_thread("alice", thread.id))
        write = asyncio.create_task(store.create_thread("alice", "waiting"))
        await asyncio.sleep(0.2)
        # The loop ran meanwhile (this coroutine woke up); both calls still wait.
        assert not read.done()
        assert not write.done()
    finally:
        other.execute("COMMIT")
        other.close()
    assert await read == thread
    created = await write
    assert await store.get_thread("alice", created.id) == created
